// Package wire is the Kiln wire format: every message struct, the [MsgType]
// that names each one, the protocol version, the refusal codes, and the codec
// that frames them. It imports only msgpack and the standard library;
// docs/protocol.md describes the flow.
//
// # Frames
//
// A frame is a 4-byte big-endian length, then the msgpack array
// [type, id, body] of an [Envelope], where body is the msgpack encoding of
// the struct that type names (see [NewBody]). [WriteFrame] and [ReadFrame]
// move frames; [Encode] and [Decode] turn bodies into envelopes and back.
//
// # Untrusted input
//
// [ReadFrame] rejects a length over its cap before allocating, and every
// msgpack value read from the network passes [Validate] before the msgpack
// decoder sees it, so no declared length can make the decoder allocate more
// than a small multiple of the frame. Decode alone is safe on any bytes.
//
// Everything in this package is safe for concurrent use: it holds no state.
package wire
