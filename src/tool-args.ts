/**
 * Command-line arguments of the developer tools (npm run sim, sim:kv,
 * chaos), parsed by node:util's parseArgs (strict), with what a user of a
 * command expects from it: `--help` prints the usage and exits 0; an unknown
 * option, a missing value or a stray argument prints what was wrong and the
 * usage, and exits 2 (a usage error, as the piccolo CLI's), never a stack
 * trace. `parse` runs parseArgs with the tool's options, `help` among them.
 */
export function toolArgs<T extends { values: { help?: boolean | undefined } }>(
  usage: string,
  parse: () => T,
): T["values"] {
  let parsed: T;
  try {
    parsed = parse();
  } catch (err) {
    console.error(`${(err as Error).message}\n\n${usage}`);
    process.exit(2);
  }
  if (parsed.values.help === true) {
    console.log(usage);
    process.exit(0);
  }
  return parsed.values;
}
