// Package fanout fans one upstream of a live stream out to many players of a
// node, RTMP and HTTP-FLV alike, so that an origin sees one connection per
// stream per node rather than one per viewer.
//
// The model is the FLV tag: a Source yields immutable tags (Reader parses
// an FLV byte stream incrementally, each tag bounded in size; the RTMP
// package turns an origin's play leg into tags with NewTag), and Classify
// recognises the tags a hub caches: onMetaData, the AVC/HEVC and AAC
// sequence headers (legacy and enhanced RTMP) and keyframes. HTTP-FLV
// players get the tags as they are; RTMP players get them framed as RTMP
// messages by the RTMP package, from the same buffers (TagInfo).
//
// A Registry holds one hub per key (StreamKey). The first Subscribe of a
// key runs the caller's Opener (an RTMP play of the origin, or an HTTP GET
// of its .flv) and starts the hub's reader goroutine; later subscribers
// share it. The hub caches the FLV header, the last onMetaData, the
// sequence headers and the GOP since the last keyframe (bounded; past the
// bound that GOP is not cached), and a new subscriber gets them first (fast
// start), then live tags.
//
// Tags are shared buffers: a subscriber's queue references them, nothing
// is copied per subscriber, and Subscriber.Next hands them out as
// net.Buffers for writev. The reader goroutine never blocks on a
// subscriber: each has a queue bounded in bytes (Config.QueueBytes); when
// a tag does not fit, the subscriber drops tags until a keyframe that fits
// (then gets the metadata and sequence headers again if they changed), and
// one that misses more than Config.BehindBytes in a row is disconnected
// (ErrSlow). When the last subscriber leaves, the upstream is kept for
// Config.Linger for a subscriber that comes back.
//
// When the upstream ends cleanly (the publisher stopped: io.EOF from the
// Source), every subscriber ends once it has read its queue, unless the
// stream moved to another origin (Opened.Moved, which Follow's upstreams
// answer). When it fails instead (its origin died), or moved, and
// Config.Reattach is set, the hub keeps
// its subscribers and runs its Opener again, retrying until Reattach has
// passed; the Opener routes the stream anew, so the hub follows the stream
// to its new origin (Follow). The hub then switches its subscribers to the
// new upstream as the Source contract says: at the new upstream's first
// keyframe, after its metadata and sequence headers, with timestamps
// rebased so that they continue, monotonic (modulo 2^32), from the last
// ones delivered. One re-attach per node serves all of that node's
// players, and the same switch is the seam for a stream with several
// sources: the players' side (Subscriber) does not change with it.
//
// A planned move (Registry.Switch) is make-before-break: the hub opens
// the stream's new upstream while its players go on with the old one, and
// switches them when the two line up. Frames are identified by content (a
// hash of a keyframe's type and body, which is the same on every origin
// fed by the same publisher, whatever timestamps each origin gives it), so
// the new upstream's timestamps are mapped onto those the players had, by
// its first keyframe, and its frames the players already had are dropped:
// no frame lost or repeated, no jump in timestamps. The hub remembers the
// last keyframes it delivered (bounded) for that, and a re-attach after a
// failure uses them too: a new upstream whose origin held the stream
// already (a warm replica) sends its cached GOP first, and the frames of
// it that players had are dropped rather than played twice. A switch that
// cannot be aligned (another encoding, an audio-only stream, a new
// upstream ahead of where the old one failed) falls back to rebasing, as
// above. Both kinds are reported (Reattach.Kind, Gap, Repeats, Aligned).
//
// The registry is built once by the command that composes a node and
// handed to every protocol server whose players it serves (RTMP and
// HTTP-FLV), so that their players of a stream share one upstream; each
// server brings its own Opener, and Upstream lets one protocol's players
// be fed from another protocol's play of the origin.
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
// for all of them (a linger timer's callback, a planned switch's
// goroutine and the wait for a closed hub's reader are the hub's too;
// Config.OnReattach and OnSwitch run on its reader);
// whoever made the Registry closes it, after the servers that subscribe to
// it. The registry is bounded (Config.MaxHubs); beyond
// it Subscribe returns ErrFull and the caller relays on its own.
//
// It imports only the standard library and stream; it knows no protocol
// package and nothing of the mesh.
package fanout
