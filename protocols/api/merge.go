package api

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// OriginResult is one origin's line in the "origins" array of an aggregated
// answer.
type OriginResult struct {
	ID string `json:"id"`
	// OK is true when the origin answered in time with SRS JSON and code 0.
	OK bool `json:"ok"`
	// Error says why not ("" when OK).
	Error string `json:"error,omitempty"`
	// Count is the number of entries the origin listed (lists only).
	Count int `json:"count"`
}

// SummaryResult is one origin's line in the "origins" array of
// /api/v1/summaries.
type SummaryResult struct {
	ID    string `json:"id"`
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
	// Data is the origin's own summaries "data" object, as it sent it.
	Data json.RawMessage `json:"data,omitempty"`
}

// parseSRS decodes an SRS API answer: a JSON object whose "code" is 0.
func parseSRS(body []byte) (map[string]json.RawMessage, error) {
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(body, &doc); err != nil || doc == nil {
		return nil, ErrBadOriginAnswer
	}
	raw, ok := doc["code"]
	if !ok {
		return nil, fmt.Errorf("%w: no code", ErrBadOriginAnswer)
	}
	var code json.Number
	if err := json.Unmarshal(raw, &code); err != nil {
		return nil, fmt.Errorf("%w: code is not a number", ErrBadOriginAnswer)
	}
	if code.String() != "0" {
		return nil, fmt.Errorf("%w %s", ErrOriginCode, code.String())
	}
	return doc, nil
}

// decorate returns a JSON object entry with "origin" and "node" set. The
// entry must be a JSON object.
func decorate(entry json.RawMessage, origin, node string) (json.RawMessage, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(entry, &obj); err != nil || obj == nil {
		return nil, fmt.Errorf("%w: entry is not an object", ErrBadOriginAnswer)
	}
	obj["origin"], _ = json.Marshal(origin)
	if node != "" {
		obj["node"], _ = json.Marshal(node)
	}
	return json.Marshal(obj)
}

// mergeList merges the list named field ("streams", "clients") of the SRS
// answers of several origins, in the order of answers. Every entry gains
// "origin" (the id of the answer it came from) and "node". An answer that
// failed, is not SRS JSON with code 0, or whose list holds anything but
// objects contributes no entries and an OriginResult that says why.
func mergeList(field, node string, answers []answer) ([]json.RawMessage, []OriginResult) {
	entries := []json.RawMessage{}
	results := make([]OriginResult, 0, len(answers))
	for _, a := range answers {
		list, err := listOf(field, node, a)
		if err != nil {
			results = append(results, OriginResult{ID: a.ID, Error: err.Error()})
			continue
		}
		entries = append(entries, list...)
		results = append(results, OriginResult{ID: a.ID, OK: true, Count: len(list)})
	}
	return entries, results
}

func listOf(field, node string, a answer) ([]json.RawMessage, error) {
	if a.Err != nil {
		return nil, a.Err
	}
	doc, err := parseSRS(a.Body)
	if err != nil {
		return nil, err
	}
	raw, ok := doc[field]
	if !ok || bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		return nil, nil
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, fmt.Errorf("%w: %q is not a list", ErrBadOriginAnswer, field)
	}
	out := make([]json.RawMessage, 0, len(items))
	for _, it := range items {
		d, err := decorate(it, a.ID, node)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, nil
}

// window applies SRS's start/count paging to a merged list.
func window(entries []json.RawMessage, start, count int) []json.RawMessage {
	if start < 0 {
		start = 0
	}
	if start >= len(entries) {
		return []json.RawMessage{}
	}
	end := len(entries)
	if count >= 0 && count < end-start {
		end = start + count
	}
	return entries[start:end]
}

// mergeSummaries builds the "data" of /api/v1/summaries from the origins'
// answers: one SummaryResult per answer and the totals of the numbers that
// add up ("origins", "origins_ok" and each summable field present in at least
// one answer).
func mergeSummaries(answers []answer) ([]SummaryResult, map[string]float64) {
	// The numbers of SRS's summaries that add up across origins, as
	// "section.field" of the origin's data.
	summable := []struct{ section, field string }{
		{"self", "mem_kbyte"},
		{"system", "conn_srs"},
		{"system", "conn_sys"},
		{"system", "srs_recv_bytes"},
		{"system", "srs_send_bytes"},
		{"system", "cpus"},
	}
	results := make([]SummaryResult, 0, len(answers))
	totals := map[string]float64{"origins": float64(len(answers)), "origins_ok": 0}
	for _, a := range answers {
		data, err := summaryOf(a)
		if err != nil {
			results = append(results, SummaryResult{ID: a.ID, Error: err.Error()})
			continue
		}
		results = append(results, SummaryResult{ID: a.ID, OK: true, Data: data})
		totals["origins_ok"]++
		var sections map[string]json.RawMessage
		if json.Unmarshal(data, &sections) != nil {
			continue // data is not an object: nothing to add
		}
		for _, t := range summable {
			var section map[string]json.RawMessage
			if json.Unmarshal(sections[t.section], &section) != nil {
				continue
			}
			var v float64
			if raw, ok := section[t.field]; ok && json.Unmarshal(raw, &v) == nil {
				totals[t.field] += v
			}
		}
	}
	return results, totals
}

func summaryOf(a answer) (json.RawMessage, error) {
	if a.Err != nil {
		return nil, a.Err
	}
	doc, err := parseSRS(a.Body)
	if err != nil {
		return nil, err
	}
	data := doc["data"]
	if len(data) == 0 {
		return json.RawMessage("null"), nil
	}
	return data, nil
}
