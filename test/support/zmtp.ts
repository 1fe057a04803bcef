/**
 * A raw ZMTP 3.0 peer over node:net, for attacks a ZeroMQ library would not let a test make: it
 * completes the NULL handshake as the given socket type, then writes frames by hand — for
 * example a frame header announcing 1 GiB followed by only part of the body — or stops reading
 * its TCP socket altogether (a subscriber that never reads).
 */
import { connect, type Socket } from "node:net";

function greeting(): Buffer {
  const g = Buffer.alloc(64);
  g[0] = 0xff;
  g[9] = 0x7f;
  g[10] = 3; // version 3.0
  g[11] = 0;
  g.write("NULL", 12, "ascii"); // mechanism, zero-padded to 20 bytes; as-server 0; filler
  return g;
}

function readyCommand(socketType: string): Buffer {
  const name = Buffer.from("Socket-Type", "ascii");
  const value = Buffer.from(socketType, "ascii");
  const len = Buffer.alloc(4);
  len.writeUInt32BE(value.length);
  const body = Buffer.concat([Buffer.from([5]), Buffer.from("READY", "ascii"), Buffer.from([name.length]), name, len, value]);
  return Buffer.concat([Buffer.from([0x04, body.length]), body]);
}

/** A frame header: `more` for a frame followed by others; sizes over 255 use the 8-byte form. */
export function frameHeader(size: number, more = false): Buffer {
  if (size <= 255) return Buffer.from([more ? 0x01 : 0x00, size]);
  const h = Buffer.alloc(9);
  h[0] = 0x02 | (more ? 0x01 : 0x00);
  h.writeBigUInt64BE(BigInt(size), 1);
  return h;
}

export interface RawPeer {
  sock: Socket;
  /** Resolves when the peer closes the connection (libzmq disconnects on a protocol error). */
  closed: Promise<void>;
  write(b: Buffer): Promise<void>;
}

/** Connect and finish the NULL handshake (greeting both ways, our READY, the server's READY). */
export function rawPeer(host: string, port: number, socketType: string): Promise<RawPeer> {
  return new Promise((resolve, reject) => {
    const sock = connect(port, host);
    let got = Buffer.alloc(0);
    const closed = new Promise<void>((r) => sock.once("close", () => r()));
    const write = (b: Buffer) => new Promise<void>((r, j) => sock.write(b, (err) => (err ? j(err) : r())));
    sock.once("error", reject);
    sock.on("connect", () => { void write(Buffer.concat([greeting(), readyCommand(socketType)])); });
    const onData = (d: Buffer) => {
      got = Buffer.concat([got, d]);
      // the server's greeting (64 bytes) and a short READY command (2-byte header + body)
      if (got.length >= 66 && got.length >= 66 + got[65]!) {
        sock.off("data", onData);
        sock.off("error", reject);
        sock.on("error", () => {});
        resolve({ sock, closed, write });
      }
    };
    sock.on("data", onData);
  });
}
