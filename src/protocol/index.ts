export * from "./errors.ts";
export * from "./framing.ts";
export * from "./sign.ts";
export * from "./message.ts";
