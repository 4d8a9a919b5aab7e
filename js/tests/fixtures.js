// The kernel's `options` trait as lossviz/widget/options.py sends it (options.json), for the tests to pass in.
import { readFileSync } from "node:fs";

export const OPTIONS = JSON.parse(readFileSync(new URL("./options.json", import.meta.url), "utf8"));
export const FIELDS = OPTIONS.fields;
export const LIMITS = OPTIONS.limits;
