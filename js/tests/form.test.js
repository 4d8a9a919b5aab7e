import { test } from "node:test";
import assert from "node:assert/strict";
import { FIELDS, parseField, parseFields, isEdited } from "../form.js";

const spec = (name) => FIELDS.find((f) => f.name === name);

test("numeric fields parse and refuse bad values in words", () => {
  assert.deepEqual(parseField(spec("lr"), "0.05"), { value: 0.05 });
  assert.match(parseField(spec("lr"), "-0.1").error, /learning rate must be greater than 0/);
  assert.match(parseField(spec("lr"), "abc").error, /not a number/);
  assert.match(parseField(spec("lr"), "").error, /empty/);
  assert.match(parseField(spec("batch_size"), "12.5").error, /whole number/);
  assert.deepEqual(parseField(spec("seed"), ""), { value: null });
  assert.match(parseField(spec("resolution"), "1000").error, /at most 401/);
  assert.deepEqual(parseField(spec("range"), " -2 : 1.5 "), { value: "-2:1.5" });
  assert.match(parseField(spec("range"), "1:-1").error, /greater than min/);
  assert.deepEqual(parseField(spec("nesterov"), true), { value: true });
});

test("parseFields collects values and errors by name", () => {
  const { values, errors } = parseFields({ lr: "0.1", momentum: "x", epochs: "3" }, ["lr", "momentum", "epochs"]);
  assert.deepEqual(values, { lr: 0.1, epochs: 3 });
  assert.deepEqual(Object.keys(errors), ["momentum"]);
});

test("edited marks only real changes", () => {
  assert.equal(isEdited(spec("lr"), "0.1", 0.1), false);
  assert.equal(isEdited(spec("lr"), "0.10", 0.1), false);
  assert.equal(isEdited(spec("lr"), "0.2", 0.1), true);
  assert.equal(isEdited(spec("seed"), "", null), false);
  assert.equal(isEdited(spec("nesterov"), true, false), true);
  assert.equal(isEdited(spec("optimizer"), "adam", "sgd"), true);
});
