/**
 * `backup-key-vault/client/node`: the backup file format (client/backup-file.ts) in Node:
 * node:crypto AES-256-GCM (`nodeAead`, the same bytes as WebCrypto and faster), stream
 * transforms, and whole-file encryption and decryption that write through a `.partial` file and
 * rename only when the result is complete and authenticated.
 * @module backup-key-vault/client/node
 */
export * from './backup-file-node.ts';
