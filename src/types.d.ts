declare module 'mailsplit' {
  import { Transform } from 'node:stream';
  export class Splitter extends Transform {
    constructor(options?: { ignoreEmbedded?: boolean; maxHeadSize?: number; maxChildNodes?: number });
  }
}
declare module 'libbase64' {
  const m: { decode(s: string): Buffer; encode(b: Buffer | string): string };
  export default m;
}
declare module 'libqp' {
  const m: { decode(s: string): Buffer; encode(b: Buffer | string): string };
  export default m;
}
