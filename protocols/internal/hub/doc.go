// Package hub fans one upstream HTTP-FLV stream out to many players of a
// node, so that an origin sees one connection per stream per node rather
// than one per viewer.
//
// Reader parses an FLV stream incrementally into immutable tags, each
// bounded in size, and Classify recognises the tags a hub caches:
// onMetaData, the AVC/HEVC and AAC sequence headers (legacy and enhanced
// RTMP) and keyframes.
//
// A Registry holds one hub per key. The first Subscribe of a key runs the
// caller's Opener (an HTTP GET of the origin's .flv, say) and starts the
// hub's reader goroutine; later subscribers share it. The hub caches the
// FLV header, the last onMetaData, the sequence headers and the GOP since
// the last keyframe (bounded; past the bound that GOP is not cached), and
// a new subscriber gets them first (fast start), then live tags.
//
// Tags are shared buffers: a subscriber's queue references them, nothing
// is copied per subscriber, and Subscriber.Next hands them out as
// net.Buffers for writev. The reader goroutine never blocks on a
// subscriber: each has a queue bounded in bytes (Config.QueueBytes); when
// a tag does not fit, the subscriber drops tags until a keyframe that fits
// (then gets the metadata and sequence headers again if they changed), and
// one that misses more than Config.BehindBytes in a row is disconnected
// (ErrSlow). When the last subscriber leaves, the upstream is kept for
// Config.Linger for a subscriber that comes back; when the upstream ends,
// every subscriber ends once it has read its queue.
//
// Authorization: subscribers share a hub only when their keys are equal,
// and callers put the client's query (where players carry their tokens) in
// the key. An origin that authorizes plays (SRS's on_play hook) therefore
// sees one request per distinct query: a player never rides silently on
// another player's approval with a different query. Players with the same
// query share the approval the first one got, as they would share an
// answer from a cache.
//
// Every goroutine has an owner: a hub's reader ends when the hub closes
// (linger expiry, upstream end, Registry.Close), and Registry.Close waits
// for all of them. The registry is bounded (Config.MaxHubs); beyond it
// Subscribe returns ErrFull and the caller relays on its own.
//
// It imports only the standard library (and may import stream); it knows
// no protocol package and nothing of the mesh.
package hub
