// Package httpjson writes the JSON answers of srs-mesh's HTTP endpoints in
// SRS's shape: a body with a numeric "code" (0 on success) and, for errors,
// a "message", next to an HTTP status that says the same. The system API,
// the SRS API port and the protocols' own error answers all use it, so that
// every endpoint errs alike.
package httpjson

import (
	"encoding/json"
	"net/http"
)

// ErrorBody is the body of an error answer: {"code":N,"message":"..."}.
// Code is the HTTP status unless an SRS-compatible endpoint names its own
// (SRS's 2048 for an unknown stream, say).
type ErrorBody struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

// Write answers with status and v encoded as JSON.
func Write(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// Error answers with status and {"code":status,"message":msg}.
func Error(w http.ResponseWriter, status int, msg string) {
	Write(w, status, ErrorBody{Code: status, Message: msg})
}

// OK answers 200 with {"code":0,"data":data}.
func OK(w http.ResponseWriter, data any) {
	Write(w, http.StatusOK, map[string]any{"code": 0, "data": data})
}
