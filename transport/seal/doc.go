// Package seal owns the end-to-end encryption of job payloads: the program
// text and stdin a client sends, and the stdout, stderr and compiler output a
// slave sends back. The master routes the sealed bytes but cannot read them.
//
// The package is a leaf: it imports only the standard library and
// golang.org/x/crypto, and knows nothing of jobs, sessions or messages. Its
// callers decide which key seals what; the package makes every misuse it can
// detect an error.
//
// # Keys
//
// Each slave has a long-lived X25519 key pair ([GenerateKey], [PublicKey]).
// For each job the client draws a fresh 32-byte content key
// ([NewContentKey]) and wraps it for the slave's public key with [Wrap]; the
// slave recovers it with [Unwrap]. The wrap is bound to a context, built
// with [Context] from the job id and a purpose, so a wrapped key moved to
// another job fails to unwrap. Moving a job to another slave needs only a new
// wrap of the same content key; the sealed payloads stay as they are.
//
// One content key seals several payloads, told apart by a label ([LabelSource],
// [LabelStdin], [LabelStdout], [LabelStderr], [LabelCompile] or any other
// string of 1 to [MaxLabel] bytes). Every payload draws a random salt, so the
// same key and label may seal many payloads (for example one per attempt of
// a job) without reusing a nonce.
//
// # Payloads
//
// A payload that travels as one byte stream (a file stream) is sealed with
// [Seal] and opened with [Open] when it fits in memory, or with [NewWriter]
// and [NewReader] when it does not. A payload that travels as a series of
// separate messages (streamed output, one wire.Output per chunk) is sealed
// with a [Sequence] and opened with a [SequenceOpener].
//
// Nothing is ever returned before it is authenticated. [Open] returns all of
// the plaintext or none of it. [NewReader] releases a chunk only after its tag
// verified, and reports a missing end as [ErrTruncated], never as io.EOF.
// [SequenceOpener.OpenNext] releases one message at a time, and
// [SequenceOpener.Finish] reports a sequence that never reached its last
// message.
//
// # Errors
//
// Failures match one of three sentinels with errors.Is:
//
//   - [ErrWrongKey]: the header or the wrapped key does not authenticate under
//     the key, label or context given. Either the key is wrong, the payload
//     belongs to another job or label, or the header was altered.
//   - [ErrTruncated]: the data ends before the chunk or message marked last.
//   - [ErrTampered]: anything else that fails authentication or parsing: a
//     flipped bit, a dropped, repeated or reordered chunk, a chunk from
//     another payload, data after the last chunk.
//
// An error from a [Reader] or a [SequenceOpener] is sticky: every later call
// returns it again.
//
// # Format
//
// All integers are big-endian. HKDF is HKDF-SHA256 (RFC 5869), AEAD is
// ChaCha20-Poly1305 (RFC 8439) with a 16-byte tag, HMAC is HMAC-SHA256.
//
// A wrapped content key is 81 bytes:
//
//	version   1 byte   0x01
//	ephemeral 32 bytes X25519 public key, fresh for each wrap
//	sealed    48 bytes AEAD(wrapKey, nonce = 12 zero bytes, content key, ad = version)
//
//	shared  = X25519(ephemeral private, recipient public)   (all-zero result refused)
//	wrapKey = HKDF(ikm = shared, salt = ephemeral || recipient public,
//	               info = "kiln seal v1 wrap" || context, 32 bytes)
//
// [Context] encodes each part as a uvarint length followed by its bytes, so
// distinct part lists never give the same context.
//
// A sealed payload, stream or sequence, starts with a 52-byte header:
//
//	magic   2 bytes  "ks"
//	version 1 byte   0x01
//	kind    1 byte   0x01 stream, 0x02 sequence
//	salt    16 bytes random, fresh for each payload
//	mac     32 bytes HMAC(macKey, magic || version || kind || salt)
//
//	aeadKey || macKey = HKDF(ikm = content key, salt = salt,
//	                         info = "kiln seal v1 " || kindName || 0x00 || label, 64 bytes)
//
// where kindName is "stream" or "sequence". The mac commits the header to the
// content key and label (ChaCha20-Poly1305 alone is not key-committing) and
// lets a wrong key or label fail at once with [ErrWrongKey].
//
// Chunk i (counting from 0) is AEAD(aeadKey, nonce_i, plaintext_i, ad = empty)
// with the 12-byte nonce
//
//	nonce_i = i as an 11-byte big-endian counter || last
//
// where last is 0x01 for the final chunk and 0x00 for every other one. A
// dropped, repeated or reordered chunk is opened under the wrong counter, a
// truncated payload lacks the last flag, a chunk from another payload is under
// another key: each fails its tag.
//
// A stream is the header followed by its chunks back to back. Every chunk but
// the last holds exactly [ChunkSize] (64 KiB) of plaintext, so 64 KiB + 16
// bytes of ciphertext; the last holds 1 to ChunkSize bytes, or 0 bytes only
// when it is the only chunk (an empty payload). The encoding is canonical: a
// plaintext and a salt give exactly one stream. Its size is
//
//	52 + len(plaintext) + 16 * max(1, ceil(len(plaintext) / 65536))
//
// A sequence is a series of messages. Message 0 is the header followed by
// chunk 0; message i > 0 is chunk i alone. Chunks of a sequence hold any
// number of bytes, including zero, and any message may be the last; nothing
// may follow it. The wire's own sequence number (wire.Output.Seq) is metadata
// for the router; the opener relies only on the counter inside the nonce.
package seal
