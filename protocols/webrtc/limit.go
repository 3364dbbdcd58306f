package webrtc

import (
	"container/list"
	"fmt"
	"math"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/srs-mesh/srs-mesh/stream/httpjson"
)

// offerLimiter bounds the offers each client makes: a token bucket per
// client, keyed by the request's RemoteAddr (an IPv4 address, or the /64 of
// an IPv6 one, which one host usually holds whole). This package never reads
// headers such as X-Forwarded-For: a client could write any. RemoteAddr is
// the TCP peer, unless the node's composition root was told to believe some
// load balancers (their PROXY protocol header or forwarding header), which
// then name the client.
//
// The table of buckets holds at most max clients, least recently used last.
// A client unseen for idle, by which time its bucket is full again, is
// forgotten; forgetting it loses nothing. When the table is full of clients
// seen more recently, new clients share one overflow bucket with the same
// rate and burst, so that an attacker with more addresses than the table
// holds gains no more than one client's rate from the addresses beyond it.
// Its methods are safe for concurrent use.
type offerLimiter struct {
	limit rate.Limit
	burst int
	max   int
	idle  time.Duration

	// now is the clock the server's offers are counted by; nil means
	// time.Now. Tests set it (before the first offer) to step time
	// instead of waiting, and to keep a slow run from refilling buckets.
	now func() time.Time

	mu       sync.Mutex
	clients  map[netip.Prefix]*list.Element // of *offerClient
	lru      list.List                      // most recently used first
	overflow *rate.Limiter
}

// offerClient is one client's bucket and when it was last used.
type offerClient struct {
	key  netip.Prefix
	lim  *rate.Limiter
	last time.Time
}

// newOfferLimiter allows each client perSecond offers on average and burst
// at once, tracking at most max clients. perSecond and burst must be
// positive, max at least 1.
func newOfferLimiter(perSecond float64, burst, max int) *offerLimiter {
	// A bucket refills in burst/perSecond; forget clients only after that
	// (a minute at least, a day at most).
	idle := time.Minute
	if refill := float64(burst) / perSecond; refill > idle.Seconds() {
		idle = time.Duration(min(refill, 86400) * float64(time.Second))
	}
	return &offerLimiter{
		limit:    rate.Limit(perSecond),
		burst:    burst,
		max:      max,
		idle:     idle,
		clients:  make(map[netip.Prefix]*list.Element),
		overflow: rate.NewLimiter(rate.Limit(perSecond), burst),
	}
}

// clientKey is the bucket key of a peer address: the IPv4 address, or the
// IPv6 /64; the zero Prefix, one shared bucket, for an address that does not
// parse (a listener that is not TCP).
func clientKey(remoteAddr string) netip.Prefix {
	ap, err := netip.ParseAddrPort(remoteAddr)
	if err != nil {
		return netip.Prefix{}
	}
	ip := ap.Addr().Unmap().WithZone("")
	bits := 32
	if ip.Is6() {
		bits = 64
	}
	p, _ := ip.Prefix(bits)
	return p
}

// allow takes one offer from the bucket of the client key at now. When the
// bucket is empty it takes nothing and returns false and how long until it
// holds an offer again.
func (l *offerLimiter) allow(key netip.Prefix, now time.Time) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	// Forget up to two idle clients per call: the table shrinks at least
	// as fast as it grows.
	for range 2 {
		el := l.lru.Back()
		if el == nil || now.Sub(el.Value.(*offerClient).last) < l.idle {
			break
		}
		delete(l.clients, el.Value.(*offerClient).key)
		l.lru.Remove(el)
	}
	var lim *rate.Limiter
	if el, ok := l.clients[key]; ok {
		c := el.Value.(*offerClient)
		c.last = now
		l.lru.MoveToFront(el)
		lim = c.lim
	} else if len(l.clients) < l.max {
		c := &offerClient{key: key, lim: rate.NewLimiter(l.limit, l.burst), last: now}
		l.clients[key] = l.lru.PushFront(c)
		lim = c.lim
	} else {
		lim = l.overflow
	}
	r := lim.ReserveN(now, 1)
	if !r.OK() {
		return false, time.Second
	}
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d
	}
	return true, 0
}

// clock returns the time offers are counted at: l.now's, or time.Now's.
func (l *offerLimiter) clock() time.Time {
	if l.now != nil {
		return l.now()
	}
	return time.Now()
}

// size is the number of clients tracked.
func (l *offerLimiter) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.clients)
}

// admitOffer applies the per-client offer limit to r, an offer. Over the
// limit it answers 429 with a Retry-After header (whole seconds, at least 1)
// and a JSON body {"code":429,"message":...}, counts the refusal, and
// returns false.
func (s *Server) admitOffer(w http.ResponseWriter, r *http.Request) bool {
	if s.offerLimit == nil {
		return true
	}
	key := clientKey(r.RemoteAddr)
	ok, wait := s.offerLimit.allow(key, s.offerLimit.clock())
	if ok {
		return true
	}
	s.st.offersLimited.Add(1)
	secs := max(1, int64(math.Ceil(wait.Seconds())))
	w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
	httpjson.Error(w, http.StatusTooManyRequests,
		fmt.Sprintf("too many WebRTC offers from this address; retry in %ds", secs))
	return false
}
