import { test } from "node:test";
import assert from "node:assert/strict";
import { fieldNamed, parseField, parseFields, isEdited, surfaceMessage, trainFieldNames, formUpdates, opensAnother } from "../form.js";
import { FIELDS, OPTIONS } from "./fixtures.js";

const spec = (name) => fieldNamed(FIELDS, name);

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
  const { values, errors } = parseFields(FIELDS, { lr: "0.1", momentum: "x", epochs: "3" }, ["lr", "momentum", "epochs"]);
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

test("the Surface message carries adaptive: true only when the checkbox is ticked", () => {
  const parse = (adaptive, directions = "random") =>
    parseFields(FIELDS, { directions, range: "-1:1", resolution: "11", adaptive }, ["directions", "range", "resolution", "adaptive"]);
  const ticked = parse(true);
  assert.deepEqual(ticked.errors, {});
  assert.deepEqual(surfaceMessage(ticked.values, 4, [1, 2]),
    { type: "surface", center: 4, directions: "random", range: "-1:1", resolution: 11, adaptive: true });
  const plain = surfaceMessage(parse(false).values, 4, [1, 2]);
  assert.equal("adaptive" in plain, false);
  assert.equal("checkpoints" in plain, false);
  const pca = surfaceMessage(parse(true, "pca").values, 4, [1, 2, 3]);
  assert.deepEqual(pca.checkpoints, [1, 2, 3]);
  assert.equal(pca.adaptive, true);
  assert.equal(spec("adaptive").group, "surface");
  assert.equal(isEdited(spec("adaptive"), true, undefined), true);  // a form without the key: unticked
});

test("the fields come from the kernel: Train sends the train group but epochs; unknown names are skipped", () => {
  assert.deepEqual(trainFieldNames(FIELDS), ["lr", "optimizer", "momentum", "nesterov", "weight_decay", "batch_size", "schedule", "seed"]);
  assert.deepEqual(trainFieldNames([]), []);
  assert.equal(fieldNamed(FIELDS, "nope"), undefined);
  assert.deepEqual(parseFields(FIELDS, { nope: "1" }, ["nope"]), { values: {}, errors: {} });
  assert.deepEqual(parseFields([], { lr: "0.1" }), { values: {}, errors: {} }); // before the kernel sends options
  assert.match(parseField(spec("n"), "1001").error, /at most 1000/);
  assert.deepEqual(spec("optimizer").choices, OPTIONS.optimizers); // a choice's values are the kernel's list
});

test("a new kernel form never overwrites an edited field; another checkpoint or a reset replaces all", () => {
  const loaded = { checkpoint: 3, lr: 0.1, momentum: 0.9, epochs: 1 };
  const fields = ["lr", "momentum", "epochs"].map(spec);
  // the user typed lr 0.05; the kernel's form for the same checkpoint now says momentum 0.5, lr 0.2
  const raw = { lr: "0.05", momentum: "0.9", epochs: "1" };
  const next = { checkpoint: 3, lr: 0.2, momentum: 0.5, epochs: 1 };
  assert.deepEqual(formUpdates(fields, raw, loaded, next, false), { momentum: 0.5 });
  // the same form again (checkpoints arrive): nothing is written
  assert.deepEqual(formUpdates(fields, raw, loaded, loaded, false), {});
  // reload (another checkpoint opened, Reset): every field from the kernel
  assert.deepEqual(formUpdates(fields, raw, loaded, next, true), { lr: 0.2, momentum: 0.5, epochs: 1 });
  assert.equal(opensAnother(null, next), true);
  assert.equal(opensAnother(loaded, next), false);
  assert.equal(opensAnother(loaded, { ...next, checkpoint: 4 }), true);
  assert.equal(opensAnother({ checkpoint: null }, { checkpoint: null }), false);
});
