// ESLint (flat config) for the Explorer's front end in js/: `npm run lint`. An .mjs file: the repository root
// stays CommonJS (js/package.json makes js/ ES modules).
import js from "@eslint/js";
import globals from "globals";

export default [
  { ignores: ["node_modules/", "src/", "**/*.d.ts"] },
  js.configs.recommended,
  {
    languageOptions: { ecmaVersion: 2022, sourceType: "module", globals: globals.browser },
    rules: {
      eqeqeq: ["error", "always"],
      "no-var": "error",
      "prefer-const": "error",
      "no-unused-vars": ["error", { args: "all", argsIgnorePattern: "^_", caughtErrors: "all" }],
      "no-shadow": "error",
      "no-implicit-coercion": ["error", { allow: ["!!"] }],
      "object-shorthand": "error",
      "prefer-template": "error",
      "no-console": ["error", { allow: ["error", "warn"] }],
    },
  },
  // node: the tests, the build script and this file
  { files: ["js/tests/**/*.js", "js/build.mjs", "eslint.config.mjs"], languageOptions: { globals: globals.node } },
  { files: ["js/build.mjs"], rules: { "no-console": "off" } },
  { files: ["**/*.cjs"], languageOptions: { sourceType: "commonjs", globals: globals.node } },
];
