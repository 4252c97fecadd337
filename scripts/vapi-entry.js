// esbuild's entry for web/vendor/vapi-web.js: the page imports the hosted SDK's Vapi class as the default export.
export { default } from "@vapi-ai/web";
