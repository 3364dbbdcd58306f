package main

import (
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/srs-mesh/srs-mesh/stream"
)

// originList is the value of --origin. Each origin is "key=value,..."
// (see stream.ParseStaticOrigin, plus the credential keys of
// parseOrigins); one value may hold several origins separated by ';', on
// the command line as in SRS_MESH_ORIGIN, and the flag repeats. Empty
// pieces (a trailing ';') are skipped.
type originList []originSpec

// originSpec is one origin of --origin.
type originSpec struct {
	text string
	// secret is set when the flag value text came from may hold a
	// credential: some key of it is not known to hold none (see
	// firstSecretKey). A credential may hold ',' or ';', and then
	// runs over into the pieces, even the origins, that follow it, so
	// nothing of such a value but its known keys is shown: errors name
	// keys only, and String shows no value.
	secret bool
	// unknownKey is the first key of the flag value not known to hold no
	// secret, when it is in text and is no credential key: a mistyped key
	// that errors may name, as no credential comes before it.
	unknownKey string
}

func (l *originList) Set(v string) error {
	first := firstSecretKey(v)
	secret := first != ""
	for _, one := range strings.Split(v, ";") {
		if one = strings.TrimSpace(one); one == "" {
			continue
		}
		spec := originSpec{text: one, secret: secret}
		if first != "" && !credentialKey(first) && firstSecretKey(one) == first {
			spec.unknownKey, first = first, ""
		}
		*l = append(*l, spec)
	}
	return nil
}

// String lists the origins with their credentials redacted: pflag may
// print it.
func (l *originList) String() string {
	if len(*l) == 0 {
		return "" // pflag then shows no default
	}
	out := make([]string, len(*l))
	for i, s := range *l {
		out[i] = s.redacted()
	}
	return "[" + strings.Join(out, ";") + "]"
}

func (l *originList) Type() string { return "origins" }

// Keys of an --origin value that hold the credentials srs-mesh sends to the
// origin's HTTP API. They stay on this node: they are not part of the
// replicated stream.Origin.
const (
	keyAPIToken     = "api-token"      // "Authorization: Bearer <token>" (SRS 8's http_api.auth of type Bearer)
	keyAPITokenFile = "api-token-file" // the same, read from a file
	keyAPIAuth      = "api-auth"       // user:password, sent as Basic (SRS's http_api.auth)
	keyAPIAuthFile  = "api-auth-file"  // the same, read from a file
)

// maxCredentialBytes bounds a credential read from a flag or a file.
const maxCredentialBytes = 4096

// originCredentials are the Authorization header values sent to origins'
// HTTP APIs: an origin's own (from its --origin value), else fallback
// (--origin-api-token-file or --origin-api-auth-file), else none.
type originCredentials struct {
	byID     map[string]string
	fallback string
}

// configured reports whether some origin is sent credentials.
func (c originCredentials) configured() bool {
	return c.fallback != "" || len(c.byID) > 0
}

// get is api.Config.Credentials.
func (c originCredentials) get(id string) string {
	if v, ok := c.byID[id]; ok {
		return v
	}
	return c.fallback
}

// parseOrigins parses every --origin value of o and the default
// credentials of origins. An origin id given twice, a key given twice, an
// unknown key or a missing ip= is an error that names --origin and the
// key; no error carries a credential.
func parseOrigins(o serveOptions) ([]stream.Origin, originCredentials, error) {
	creds := originCredentials{byID: map[string]string{}}
	var err error
	switch {
	case o.originTokenFile != "" && o.originAuthFile != "":
		return nil, creds, errors.New("--origin-api-token-file and --origin-api-auth-file: give one")
	case o.originTokenFile != "":
		if creds.fallback, err = credentialFromFile(keyAPIToken, o.originTokenFile); err != nil {
			return nil, creds, fmt.Errorf("--origin-api-token-file: %w", err)
		}
	case o.originAuthFile != "":
		if creds.fallback, err = credentialFromFile(keyAPIAuth, o.originAuthFile); err != nil {
			return nil, creds, fmt.Errorf("--origin-api-auth-file: %w", err)
		}
	}
	var out []stream.Origin
	seen := map[string]bool{}
	for i, spec := range o.origins {
		org, cred, err := parseOriginSpec(spec.text)
		if err != nil {
			return nil, creds, originError(i, spec, err)
		}
		if seen[org.ID] {
			if spec.secret {
				return nil, creds, originError(i, spec, errors.New("its id= is given to another origin too"))
			}
			return nil, creds, fmt.Errorf("--origin %q: id=%s is given to another origin too", spec.text, org.ID)
		}
		seen[org.ID] = true
		if cred != "" {
			creds.byID[org.ID] = cred
		}
		out = append(out, org)
	}
	return out, creds, nil
}

// originError is err about the origin i (from 0) of --origin. An origin
// whose flag value holds no credential is quoted; one whose value does is
// named by its place, and err by what it says of known keys alone (see
// stream.StaticOriginError), as any piece of the value may be part of a
// credential.
func originError(i int, spec originSpec, err error) error {
	if !spec.secret {
		return fmt.Errorf("--origin %q: %w", spec.text, err)
	}
	msg := err.Error() // parseOriginSpec's own errors name keys and file names only
	var se *stream.StaticOriginError
	if errors.As(err, &se) {
		msg = se.Redacted()
		if strings.HasSuffix(msg, ": unknown key") && spec.unknownKey != "" {
			msg += fmt.Sprintf(" %q", spec.unknownKey)
		}
		if strings.HasSuffix(msg, "not key=value") || strings.Contains(msg, "unknown key") || strings.Contains(msg, "';'") {
			msg += "; a credential holding ',' or ';' goes in a file: " + keyAPIAuthFile + "= or " + keyAPITokenFile + "="
		}
	}
	return fmt.Errorf("--origin #%d %s (values not shown: this value holds a credential): %s", i+1, spec.redacted(), msg)
}

// parseOriginSpec splits the credential keys off one origin's value and
// parses the rest with stream.ParseStaticOrigin. It returns the origin and
// its Authorization header value ("" for none).
func parseOriginSpec(spec string) (stream.Origin, string, error) {
	var rest []string
	var credKey, credVal string
	for _, kv := range strings.Split(spec, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(kv), "=")
		switch k = strings.ToLower(strings.TrimSpace(k)); k {
		case keyAPIToken, keyAPITokenFile, keyAPIAuth, keyAPIAuthFile:
			if credKey != "" {
				if credKey == k {
					return stream.Origin{}, "", fmt.Errorf("%s= is given twice", k)
				}
				return stream.Origin{}, "", fmt.Errorf("%s= and %s= are given both: give one", credKey, k)
			}
			credKey, credVal = k, v
		default:
			rest = append(rest, kv)
		}
	}
	org, err := stream.ParseStaticOrigin(strings.Join(rest, ","))
	if err != nil {
		return stream.Origin{}, "", err
	}
	var cred string
	switch credKey {
	case keyAPIToken, keyAPIAuth:
		cred, err = credential(credKey, credVal)
	case keyAPITokenFile:
		cred, err = credentialFromFile(keyAPIToken, credVal)
	case keyAPIAuthFile:
		cred, err = credentialFromFile(keyAPIAuth, credVal)
	}
	if err != nil {
		return stream.Origin{}, "", fmt.Errorf("%s=: %w", credKey, err)
	}
	return org, cred, nil
}

// credentialFromFile reads a credential of kind keyAPIToken or keyAPIAuth
// from path; one trailing line ending is dropped.
func credentialFromFile(kind, path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxCredentialBytes+3))
	if err != nil {
		return "", err
	}
	if len(b) > maxCredentialBytes+2 {
		return "", fmt.Errorf("%s: longer than %d bytes", path, maxCredentialBytes)
	}
	v := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	cred, err := credential(kind, v)
	if err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	return cred, nil
}

// credential turns a token (keyAPIToken) or "user:password" (keyAPIAuth)
// into an Authorization header value. Errors never quote the value.
func credential(kind, v string) (string, error) {
	switch {
	case v == "":
		return "", errors.New("empty")
	case len(v) > maxCredentialBytes:
		return "", fmt.Errorf("longer than %d bytes", maxCredentialBytes)
	case strings.IndexFunc(v, func(r rune) bool { return r < 0x20 || r == 0x7f }) >= 0:
		return "", errors.New("holds a control character or a line break")
	}
	if kind == keyAPIToken {
		if strings.ContainsAny(v, " \t") {
			return "", errors.New("a bearer token has no spaces")
		}
		return "Bearer " + v, nil
	}
	user, _, ok := strings.Cut(v, ":")
	if !ok || user == "" {
		return "", errors.New("want user:password")
	}
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(v)), nil
}

// safeOriginKey reports whether k (lower case) is a key of an --origin
// value known to hold no secret: addresses, ports, capacity, file names.
func safeOriginKey(k string) bool {
	switch k {
	case "id", "name", "server", "ip", "host", "rtmp", "http", "api", "srt", "rtc",
		"max_streams", "weight", keyAPITokenFile, keyAPIAuthFile:
		return true
	}
	return false
}

// credentialKey reports whether k (lower case) is a key whose value is a
// credential.
func credentialKey(k string) bool { return k == keyAPIToken || k == keyAPIAuth }

// firstSecretKey returns the first key of an --origin flag value, its
// pieces split on ';' and ',', that is not known to hold no secret (a
// credential key, or an unknown one, which may be a mistyped credential
// key), lower case, or "" when there is none. A piece without '=' has no
// key.
func firstSecretKey(v string) string {
	for _, one := range strings.Split(v, ";") {
		for _, kv := range strings.Split(one, ",") {
			k, _, ok := strings.Cut(kv, "=")
			if k = strings.ToLower(strings.TrimSpace(k)); ok && !safeOriginKey(k) {
				return k
			}
		}
	}
	return ""
}

// redacted is the origin fit for logs and errors: as given when its flag
// value holds no credential, else its known keys alone, every value and
// every other piece shown as "<redacted>".
func (s originSpec) redacted() string {
	if !s.secret {
		return s.text
	}
	parts := strings.Split(s.text, ",")
	for i, kv := range parts {
		k, _, ok := strings.Cut(kv, "=")
		if k = strings.ToLower(strings.TrimSpace(k)); ok && (safeOriginKey(k) || credentialKey(k)) {
			parts[i] = k + "=<redacted>"
		} else {
			parts[i] = "<redacted>"
		}
	}
	return strings.Join(parts, ",")
}
