package delivery

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base32"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/funnel-operator/funnel-operator/api/funnel"
	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
)

// The Standard Webhooks headers (https://www.standardwebhooks.com).
const (
	HeaderWebhookID        = "Webhook-Id"
	HeaderWebhookTimestamp = "Webhook-Timestamp"
	HeaderWebhookSignature = "Webhook-Signature"
)

// SigningKeyPrefix marks a key in Standard Webhooks' form: the base64 of the key follows.
const SigningKeyPrefix = "whsec_"

// ErrInvalidSigningKey: a whsec_ value that does not hold a key.
var ErrInvalidSigningKey = errors.New("invalid signing key")

// SigningKey is the HMAC key a Secret value stands for: whsec_<base64> is decoded
// (surrounding whitespace, such as a file's final newline, ignored); any other value is
// the key's bytes as they are, as the former X-Funnel-Operator-Signature used them.
func SigningKey(value []byte) ([]byte, error) {
	v := bytes.TrimSpace(value)
	if !bytes.HasPrefix(v, []byte(SigningKeyPrefix)) {
		return value, nil
	}
	key, err := base64.StdEncoding.DecodeString(string(v[len(SigningKeyPrefix):]))
	switch {
	case err != nil:
		return nil, fmt.Errorf("%w: it starts with %s but the rest is not base64", ErrInvalidSigningKey, SigningKeyPrefix)
	case len(key) == 0:
		return nil, fmt.Errorf("%w: nothing follows %s", ErrInvalidSigningKey, SigningKeyPrefix)
	}
	return key, nil
}

// SigningRefs lists the Secret keys that sign an action's requests.
func SigningRefs(a *funnelv1.Action) []funnelv1.SecretKeyRef {
	switch {
	case a == nil || a.HTTP == nil:
		return nil
	case a.HTTP.Signing != nil:
		return a.HTTP.Signing.SecretRefs
	case a.HTTP.SigningSecretRef != nil:
		return []funnelv1.SecretKeyRef{*a.HTTP.SigningSecretRef}
	}
	return nil
}

// signer signs the requests of one action.
type signer struct {
	keys [][]byte
	// legacy is the deprecated signingSecretRef's value, which also signs the body alone
	// in the former header.
	legacy []byte
}

// newSigner reads the action's signing keys with c (as the subscription's ServiceAccount);
// nil when the action signs nothing.
func newSigner(ctx context.Context, c client.Reader, ns string, a *funnelv1.HTTPAction) (*signer, error) {
	refs := SigningRefs(&funnelv1.Action{HTTP: a})
	if len(refs) == 0 {
		return nil, nil
	}
	s := &signer{}
	for _, ref := range refs {
		v, err := SecretValue(ctx, c, ns, ref)
		if err != nil {
			return nil, fmt.Errorf("signing key: %w", err)
		}
		key, err := SigningKey(v)
		if err != nil {
			return nil, fmt.Errorf("signing key in Secret %s/%s, key %q: %w", ns, ref.Name, ref.Key, err)
		}
		s.keys = append(s.keys, key)
		if a.Signing == nil {
			s.legacy = v
		}
	}
	return s, nil
}

// stamp dates a request at now (webhook-timestamp, per attempt) and, with a signer, signs
// it: webhook-signature over "<webhook-id>.<webhook-timestamp>.<body>", exactly as sent.
func stamp(h http.Header, body []byte, now time.Time, s *signer) {
	ts := strconv.FormatInt(now.Unix(), 10)
	h.Set(HeaderWebhookTimestamp, ts)
	if s == nil {
		return
	}
	content := make([]byte, 0, len(h.Get(HeaderWebhookID))+len(ts)+len(body)+2)
	content = append(append(append(append(append(content, h.Get(HeaderWebhookID)...), '.'), ts...), '.'), body...)
	sigs := make([]string, len(s.keys))
	for i, key := range s.keys {
		sigs[i] = "v1," + base64.StdEncoding.EncodeToString(funnel.MAC(funnel.HMACSHA256, key, content))
	}
	h.Set(HeaderWebhookSignature, strings.Join(sigs, " "))
	if s.legacy != nil {
		h.Set(funnelv1.SignatureHeader, funnel.Signature(funnel.HMACSHA256, s.legacy, body))
	}
}

// webhookID is the Standard Webhooks id of a delivery's message: derived from its
// idempotency key, so the same for every attempt and operator restart, and new for a
// replay (a new delivery). A dead letter is another message (another body), with an id
// of its own.
func webhookID(idempotencyKey string, deadLetter bool) string {
	if deadLetter {
		idempotencyKey += "/dead-letter"
	}
	sum := sha256.Sum256([]byte(idempotencyKey))
	return "msg_" + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(sum[:20]))
}
