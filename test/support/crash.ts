// A fault from outside, for the crash-policy tests (test/node/crash.test.ts):
// loaded into a real `piccolo server` or `piccolo cerializer` process with
// NODE_OPTIONS=--import=<this file>, never by production code. Node runs it
// before the process's own code, in the main thread and in every worker
// thread, so it can make code inside the process fail as a bug would,
// without any test hook in src/:
//
//   PICCOLO_TEST_CRASH=throw     SIGUSR2 makes the main thread throw an uncaught exception
//   PICCOLO_TEST_CRASH=reject    SIGUSR2 makes the main thread leave a rejected promise unhandled
//   PICCOLO_TEST_CRASH=worker    once the file PICCOLO_TEST_CRASH_FILE exists, worker threads throw
//
// Shard workers never return to their event loop (they sleep in Atomics.wait),
// so in a worker the check runs inside Atomics.wait too, as well as on a timer
// (group workers run an event loop).
import { existsSync } from "node:fs";
import { isMainThread } from "node:worker_threads";

const mode = process.env.PICCOLO_TEST_CRASH;
const file = process.env.PICCOLO_TEST_CRASH_FILE ?? "";

if (isMainThread && (mode === "throw" || mode === "reject")) {
  process.on("SIGUSR2", () => {
    const err = new Error(`injected ${mode} from test/support/crash.ts`);
    if (mode === "throw") throw err;
    void Promise.reject(err);
  });
}

if (!isMainThread && mode === "worker" && file !== "") {
  const check = (): void => {
    if (existsSync(file)) throw new Error("injected worker crash from test/support/crash.ts");
  };
  const wait = Atomics.wait;
  Atomics.wait = ((...args: Parameters<typeof Atomics.wait>) => {
    check();
    return wait(...args);
  }) as typeof Atomics.wait;
  setInterval(check, 20).unref();
}
