#!/usr/bin/env node
// V8 grows its young generation from 1 MB to 16 MB semi-spaces under a burst of allocation (a thousand
// launches) and keeps it: ~30 MB of RSS for garbage. A server that allocates little per request does
// better with the young generation at its starting size. The flag is read when the heap grows, so it
// must be set before the modules load; hence this entry, and the server in main.ts.
import { setFlagsFromString } from "node:v8";

setFlagsFromString("--semi-space-growth-factor=1");
await import("./main.js");
