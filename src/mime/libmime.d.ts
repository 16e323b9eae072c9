/** The part of libmime 5 that src/mime/compose.ts uses (the package ships no types). */
declare module 'libmime' {
  interface HeaderParam {
    key: string;
    value: string;
  }
  const libmime: {
    /** `value` as a whole in RFC 2047 encoded-words, each at most `maxLength` characters, separated by spaces. */
    encodeWord(value: string, encoding: 'B' | 'Q', maxLength?: number): string;
    /** RFC 2047 encoded-words for the non-ASCII run of `value`; each word at most `maxLength` characters. */
    encodeWords(value: string, encoding: 'B' | 'Q', maxLength?: number): string;
    /** A structured value with its parameters, non-ASCII or long ones as RFC 2231 continuations. */
    buildHeaderValue(structured: { value: string; params?: Record<string, string> }): string;
    buildHeaderParam(key: string, value: string, maxLength?: number): HeaderParam[];
  };
  export default libmime;
}
