package funnel

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
)

// The HMAC algorithms a receiver checks signatures with (FunnelReceiver
// spec.auth.hmac.algorithm).
const (
	HMACSHA256 = "sha256"
	HMACSHA512 = "sha512"
)

// MAC is the HMAC of body under key: SHA-512 for HMACSHA512, SHA-256 for anything else
// (the receiver's default). The receiver checks it and senders sign with it, so both
// agree on the bytes.
func MAC(algorithm string, key, body []byte) []byte {
	newHash := sha256.New
	if algorithm == HMACSHA512 {
		newHash = sha512.New
	}
	m := hmac.New(newHash, key)
	m.Write(body)
	return m.Sum(nil)
}

// Signature is the header value that signs body: "<algorithm>=<hex MAC>", the
// GitHub-style form; the receiver also accepts the bare MAC in hex or base64.
func Signature(algorithm string, key, body []byte) string {
	if algorithm != HMACSHA512 {
		algorithm = HMACSHA256
	}
	return algorithm + "=" + hex.EncodeToString(MAC(algorithm, key, body))
}
