// @ts-check
import js from "@eslint/js";
import tseslint from "typescript-eslint";

export default tseslint.config(
  { ignores: ["dist/", "node_modules/", "result/", "coverage/"] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { process: "readonly", console: "readonly", URL: "readonly" } },
    rules: {
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_" }],
      "no-console": ["error"],
    },
  },
  {
    // An async function that awaits nothing reads as if it waited for something. (Tests implement
    // the interfaces of libraries that want async methods.)
    files: ["src/**"],
    rules: { "require-await": "error" },
  },
  {
    files: ["test/**", "scripts/**"],
    rules: { "no-console": "off" },
  },
);
