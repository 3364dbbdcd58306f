// Package hub fans one upstream HTTP-FLV stream out to many players of a
// node. This file's package holds the FLV tag model: Reader parses an FLV
// stream incrementally into immutable tags, bounded in size, and Classify
// recognises the tags a hub caches (onMetaData, sequence headers,
// keyframes).
//
// It imports only the standard library (and may import stream); it knows
// no protocol package and nothing of the mesh.
package hub
