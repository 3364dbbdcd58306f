package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/spf13/pflag"
	"sigs.k8s.io/yaml"
)

// maxConfigFile bounds the size of a --config file.
const maxConfigFile = 1 << 20

// applyConfigFile sets, from the YAML file at path, every flag of fs that
// neither the command line nor the environment set. Its keys are the flags'
// names ("bootstrap-expect: 3"); a list sets a repeatable flag once per item
// ("join: [a:7946, b:7946]"), and an --origin item may be a map of the
// keys --origin takes ("- {id: o1, ip: 10.0.0.5, rtmp: 1935}"). An unknown
// key, or a value its flag refuses, is an error naming the file and the key.
func applyConfigFile(fs *pflag.FlagSet, path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("--config: %w", err)
	}
	if len(b) > maxConfigFile {
		return fmt.Errorf("--config %s: larger than %d bytes", path, maxConfigFile)
	}
	j, err := yaml.YAMLToJSON(b)
	if err != nil {
		return fmt.Errorf("--config %s: %w", path, err)
	}
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(j, &doc); err != nil || doc == nil {
		if len(bytes.TrimSpace(j)) == 0 || string(bytes.TrimSpace(j)) == "null" {
			return nil // an empty file
		}
		return fmt.Errorf("--config %s: want a map of flag names to values", path)
	}
	keys := make([]string, 0, len(doc))
	for k := range doc {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, key := range keys {
		f := fs.Lookup(key)
		if f == nil || key == "config" || key == "help" {
			return fmt.Errorf("--config %s: unknown key %q (the keys are serve's flag names)", path, key)
		}
		if f.Changed {
			continue // the command line or the environment said
		}
		values, err := configValues(doc[key])
		if err != nil {
			return fmt.Errorf("--config %s: %s: %w", path, key, err)
		}
		for _, v := range values {
			if err := fs.Set(key, v); err != nil {
				return fmt.Errorf("--config %s: %s: %w", path, key, err)
			}
		}
	}
	return nil
}

// configValues turns one YAML value into the flag values it stands for: a
// scalar is one, a list one per item, a map one "k=v,k=v" (sorted keys).
func configValues(raw json.RawMessage) ([]string, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	items, isList := v.([]any)
	if !isList {
		items = []any{v}
	}
	out := make([]string, 0, len(items))
	for _, it := range items {
		s, err := configScalar(it)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

func configScalar(v any) (string, error) {
	switch x := v.(type) {
	case string:
		return x, nil
	case json.Number:
		return x.String(), nil
	case bool:
		return fmt.Sprint(x), nil
	case nil:
		return "", nil
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		parts := make([]string, len(keys))
		for i, k := range keys {
			s, err := configScalar(x[k])
			if err != nil {
				return "", err
			}
			if _, isMap := x[k].(map[string]any); isMap {
				return "", fmt.Errorf("%s: a map inside a map", k)
			}
			parts[i] = k + "=" + s
		}
		return strings.Join(parts, ","), nil
	}
	return "", fmt.Errorf("a list inside a list")
}
