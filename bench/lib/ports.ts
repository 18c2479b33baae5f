import { freePort } from "../../src/free-port.js";

export { freePort };
