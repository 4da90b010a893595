package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/funnel-operator/funnel-operator/api/funnel"
	"github.com/funnel-operator/funnel-operator/api/funnel/send"
	"github.com/funnel-operator/funnel-operator/api/funnel/synth"
	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
)

const (
	defaultEventType = funnel.TypeStatusUpdated
	defaultReceiver  = "funnel"
	userAgent        = "kubectl-funnel"
	// maxFileBytes bounds --file; far above any receiver's limit (1 MiB),
	// so that oversized bodies can still be sent to test the 413.
	maxFileBytes = 16 << 20
)

// seededClock is the instant every event is stamped with under --seed: with
// the clock fixed too, a seed gives the same bodies byte for byte, so
// sending them again is a pure duplicate (200, nothing new) rather than the
// same id with other content.
var seededClock = time.Date(2024, 10, 9, 13, 49, 31, 658518000, time.UTC)

// sendOptions are send's flags and arguments.
type sendOptions struct {
	kube    *kubeOptions
	streams genericiooptions.IOStreams

	eventType   string
	format      string
	file        string
	receiver    string
	url         string
	count       int
	concurrency int
	duplicate   int
	timeout     time.Duration
	token       string
	hmacKey     string
	seed        uint64
	quiet       bool
	dryRun      bool

	// Set from which flags were given.
	tokenSet, hmacKeySet, seedSet bool
}

func newSendCommand(kube *kubeOptions, streams genericiooptions.IOStreams) *cobra.Command {
	o := &sendOptions{kube: kube, streams: streams}
	cmd := &cobra.Command{
		Use:   "send [TYPE]",
		Short: "Send realistic Funnel webhook events to a FunnelReceiver",
		Long: `Send posts synthetic Funnel Leasing webhook events to a FunnelReceiver, the way
Funnel does: POST, application/json, one event per request, a 5 s deadline. It
is the stand-in for Funnel's undocumented testing API.

TYPE is one of the documented event types (default ` + defaultEventType + `):
  ` + strings.Join(synth.Types(), "\n  ") + `
Each goes in the envelope the docs show it in unless --format says otherwise;
with --format any other type name is sent too, with generic data. --file sends
a body of your own verbatim instead.

The FunnelReceiver (--receiver, in the namespace of -n or the kubeconfig) says
how to authenticate: its token is sent as "<header>: Bearer <token>", its HMAC
key signs the exact body as "<header>: sha256=<hex>" (or sha512). The Secrets
are read through the kubeconfig; --token and --hmac-key replace them when you
cannot read Secrets. --receiver "" reads nothing from the cluster: --url must
then be the full endpoint, and the default headers (Authorization,
X-Funnel-Signature, sha256) are used.

The URL is --url, else the receiver's status.url. A --url without a path gets
the receiver's webhook path (/webhooks/<namespace>/<name>) appended.

One event prints the answer and the FunnelEvent it creates; --count > 1
prints a summary: requests acknowledged (200 with exactly "Funnel Event
Received"), status codes, errors, rate and latency percentiles. The exit code
is non-zero unless every request was acknowledged.`,
		Example: `  # One lease_transaction.status_updated event (Classic) to the receiver "funnel",
  # through a port-forward to the operator's receiver port
  kubectl port-forward -n funnel-system deploy/funnel-operator 8080:8080 &
  kubectl funnel send --url http://127.0.0.1:8080

  # A V3 lease.move_in to the receiver "leasing" in namespace "prod", then look at it
  kubectl funnel send lease.move_in -n prod --receiver leasing
  kubectl get fev -n prod

  # The same status update in the V3 envelope, without reading Secrets
  kubectl funnel send lease_transaction.status_updated --format v3 --token "$TOKEN"

  # Load: 1000 prospect events, 20 requests at a time, each sent twice at once
  # (the receiver must store each once and acknowledge every copy)
  kubectl funnel send renter.created --count 1000 --concurrency 20 --duplicate 2

  # Reproducible bodies: the second run only sends duplicates
  kubectl funnel send --count 50 --seed 7

  # Your own body, from a file or stdin
  kubectl funnel send --file event.json
  kubectl funnel send --dry-run appointment.updated | jq . > event.json
  cat event.json | kubectl funnel send -f -

  # Without any cluster access: full URL and secrets on the command line
  kubectl funnel send --receiver "" --url http://127.0.0.1:8080/webhooks/default/funnel --hmac-key "$KEY"`,
		Args: cobra.MaximumNArgs(1),
		ValidArgsFunction: func(_ *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
			if len(args) > 0 {
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
			return synth.Types(), cobra.ShellCompDirectiveNoFileComp
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				o.eventType = args[0]
			}
			flags := cmd.Flags()
			o.tokenSet, o.hmacKeySet, o.seedSet = flags.Changed("token"), flags.Changed("hmac-key"), flags.Changed("seed")
			return o.run(cmd.Context())
		},
	}

	f := cmd.Flags()
	f.StringVar(&o.format, "format", "", "Envelope: classic, v3 or partner (default: the format the docs show TYPE in)")
	f.StringVarP(&o.file, "file", "f", "", "Send this file's body verbatim instead of a generated event (- for stdin)")
	f.StringVar(&o.receiver, "receiver", defaultReceiver, `FunnelReceiver to send to, in the namespace of -n; "" reads nothing from the cluster`)
	f.StringVar(&o.url, "url", "", "Receiver URL, e.g. http://127.0.0.1:8080 (default: the receiver's status.url); the webhook path is appended when the URL has none")
	f.IntVar(&o.count, "count", 1, "Number of events to send")
	f.IntVar(&o.concurrency, "concurrency", 1, "Number of events in flight at once")
	f.IntVar(&o.duplicate, "duplicate", 1, "Send each event this many times, the copies at once, to exercise de-duplication")
	f.DurationVar(&o.timeout, "timeout", send.FunnelTimeout, "Deadline of each request (Funnel's is 5s)")
	f.StringVar(&o.token, "token", "", "Receiver token to send instead of the one in its Secret")
	f.StringVar(&o.hmacKey, "hmac-key", "", "HMAC key to sign with instead of the one in the receiver's Secret")
	f.Uint64Var(&o.seed, "seed", 0, "Seed for reproducible bodies (also fixes their timestamps); random when unset")
	f.BoolVarP(&o.quiet, "quiet", "q", false, "Print nothing but errors; one event prints only its FunnelEvent name")
	f.BoolVar(&o.dryRun, "dry-run", false, "Print the bodies, one per line, instead of sending them")
	_ = cmd.RegisterFlagCompletionFunc("format", cobra.FixedCompletions([]string{"classic", "v3", "partner"}, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

// run is send once the command line is parsed.
func (o *sendOptions) run(ctx context.Context) error {
	if err := o.validate(); err != nil {
		return err
	}
	format, err := parseFormat(o.format)
	if err != nil {
		return err
	}
	next, err := o.bodies(format)
	if err != nil {
		return err
	}
	if o.dryRun {
		return o.printBodies(next)
	}

	// The first body is made now: it gives the format that the receiver's
	// accepted formats are checked against, and the single event's name.
	first, err := next()
	if err != nil {
		return err
	}
	firstEnv, parseErr := funnel.Parse(first)
	if format == "" && parseErr == nil {
		format = firstEnv.Format
	}
	tgt, err := o.target(ctx, format)
	if err != nil {
		return err
	}

	s := &send.Sender{URLs: []string{tgt.url}, Auth: tgt.auth, Timeout: o.timeout,
		Client: send.NewClient(o.concurrency * o.duplicate), UserAgent: userAgent}
	defer s.Client.CloseIdleConnections()

	if o.count == 1 {
		return o.sendOne(ctx, s, tgt, first, firstEnv, parseErr)
	}
	used := false
	rep := send.NewReport()
	st, err := send.Run(ctx, send.Load{Count: o.count, Concurrency: o.concurrency}, func() ([]byte, error) {
		if !used {
			used = true
			return first, nil
		}
		return next()
	}, func(ctx context.Context, body []byte) {
		for _, r := range s.SendCopies(ctx, body, o.duplicate) {
			rep.Add(r)
		}
	})
	if !o.quiet {
		if werr := writeSummary(o.streams.Out, rep, st, tgt.url, o.duplicate); werr != nil {
			return fmt.Errorf("writing the summary: %w", werr)
		}
	}
	switch {
	case err != nil:
		return err
	case st.Interrupted:
		return fmt.Errorf("sent %d of %d events: %w", st.Started, o.count, interrupted(ctx))
	case rep.NotAcknowledged() > 0:
		return fmt.Errorf("%d of %d requests were not acknowledged", rep.NotAcknowledged(), rep.Sent)
	}
	return nil
}

func (o *sendOptions) validate() error {
	switch {
	case o.count < 1:
		return fmt.Errorf("--count must be at least 1, got %d", o.count)
	case o.concurrency < 1:
		return fmt.Errorf("--concurrency must be at least 1, got %d", o.concurrency)
	case o.duplicate < 1:
		return fmt.Errorf("--duplicate must be at least 1, got %d", o.duplicate)
	case o.timeout <= 0:
		return fmt.Errorf("--timeout must be positive, got %s", o.timeout)
	case o.tokenSet && o.token == "":
		return errors.New("--token must not be empty")
	case o.hmacKeySet && o.hmacKey == "":
		return errors.New("--hmac-key must not be empty")
	case o.file != "" && o.eventType != "":
		return fmt.Errorf("TYPE %q and --file cannot be combined: the file's body is sent as it is", o.eventType)
	case o.file != "" && o.format != "":
		return errors.New("--format and --file cannot be combined: the file's body is sent as it is")
	case o.file != "" && o.seedSet:
		return errors.New("--seed and --file cannot be combined: the file's body is sent as it is")
	}
	if o.eventType == "" {
		o.eventType = defaultEventType
	}
	if o.file == "" && o.format == "" && !slices.Contains(synth.Types(), o.eventType) {
		return fmt.Errorf("unknown event type %q: use one of %s, or pass --format classic|v3|partner to send an undocumented type",
			o.eventType, strings.Join(synth.Types(), ", "))
	}
	return nil
}

// parseFormat reads --format; "" is the type's natural format.
func parseFormat(s string) (funnel.Format, error) {
	switch strings.ToLower(s) {
	case "":
		return "", nil
	case "classic":
		return funnel.FormatClassic, nil
	case "v3":
		return funnel.FormatV3, nil
	case "partner", "partnerv2", "partner-v2":
		return funnel.FormatPartnerV2, nil
	}
	return "", fmt.Errorf("--format %q: want classic, v3 or partner", s)
}

// bodies returns the source of the bodies to send: the file's, every time,
// or freshly generated events.
func (o *sendOptions) bodies(format funnel.Format) (func() ([]byte, error), error) {
	if o.file != "" {
		body, err := o.readFile()
		if err != nil {
			return nil, err
		}
		return func() ([]byte, error) { return body, nil }, nil
	}
	seed := rand.Uint64()
	if o.seedSet {
		seed = o.seed
	}
	// The type and format are mixed in so that one seed used for two kinds
	// of event does not give both the same ids (the receiver would store
	// the second as a variant of the first: same id, another body).
	stream := fnv.New64a()
	_, _ = io.WriteString(stream, o.eventType+"\x00"+string(format))
	g := synth.New(rand.New(rand.NewPCG(seed, stream.Sum64())))
	if o.seedSet {
		g.Now = func() time.Time { return seededClock }
	}
	return func() ([]byte, error) { return g.Event(o.eventType, format) }, nil
}

func (o *sendOptions) readFile() ([]byte, error) {
	var r io.Reader
	name := o.file
	if o.file == "-" {
		r, name = o.streams.In, "stdin"
	} else {
		f, err := os.Open(o.file)
		if err != nil {
			return nil, fmt.Errorf("--file: %w", err)
		}
		defer f.Close()
		r = f
	}
	body, err := io.ReadAll(io.LimitReader(r, maxFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", name, err)
	}
	if len(body) > maxFileBytes {
		return nil, fmt.Errorf("%s is larger than %d MiB", name, maxFileBytes>>20)
	}
	return body, nil
}

func (o *sendOptions) printBodies(next func() ([]byte, error)) error {
	for range o.count {
		body, err := next()
		if err != nil {
			return err
		}
		if _, err := fmt.Fprintf(o.streams.Out, "%s\n", bytes.TrimRight(body, "\n")); err != nil {
			return fmt.Errorf("writing the body: %w", err)
		}
	}
	return nil
}

// target is where and how to send.
type target struct {
	url  string
	auth send.Auth
	// namespace is the receiver's, where its FunnelEvents are created; ""
	// when no receiver was read.
	namespace string
}

// target resolves the URL and authentication, from the cluster unless
// --receiver is "".
func (o *sendOptions) target(ctx context.Context, format funnel.Format) (*target, error) {
	ov := overrides{url: o.url, format: format}
	if o.tokenSet {
		ov.token = &o.token
	}
	if o.hmacKeySet {
		ov.hmacKey = &o.hmacKey
	}
	if o.receiver == "" {
		return offlineTarget(ov)
	}
	ns, err := o.kube.Namespace()
	if err != nil {
		return nil, err
	}
	c, err := o.kube.Client()
	if err != nil {
		return nil, err
	}
	return resolveReceiver(ctx, c, types.NamespacedName{Namespace: ns, Name: o.receiver}, ov, o.streams.ErrOut)
}

// overrides are the command-line values that take precedence over the
// FunnelReceiver's; nil pointers were not given.
type overrides struct {
	url     string
	token   *string
	hmacKey *string
	// format is the envelope about to be sent, "" if unknown, to warn when
	// the receiver does not accept it.
	format funnel.Format
}

// offlineTarget serves --receiver "": nothing is read from the cluster, so
// the URL must be complete and the default headers are used.
func offlineTarget(ov overrides) (*target, error) {
	if ov.url == "" {
		return nil, errors.New(`--receiver "" needs --url with the full webhook URL, e.g. http://127.0.0.1:8080/webhooks/default/funnel`)
	}
	u, err := webhookURL(ov.url, "")
	if err != nil {
		return nil, fmt.Errorf("--url: %w", err)
	}
	var auth send.Auth
	if ov.token != nil {
		auth.Token = *ov.token
	}
	if ov.hmacKey != nil {
		auth.HMACKey = []byte(*ov.hmacKey)
	}
	return &target{url: u, auth: auth}, nil
}

// resolveReceiver reads the FunnelReceiver key and the Secrets its auth
// names, and returns how to send to it as it expects. Anything that will
// make the receiver refuse, but does not stop sending, is a warning on warn.
func resolveReceiver(ctx context.Context, c client.Reader, key types.NamespacedName, ov overrides, warn io.Writer) (*target, error) {
	var rcv funnelv1.FunnelReceiver
	if err := c.Get(ctx, key, &rcv); err != nil {
		switch {
		case apierrors.IsNotFound(err):
			return nil, fmt.Errorf("FunnelReceiver %s not found (pick one with --receiver and -n): %w", key, err)
		case meta.IsNoMatchError(err):
			return nil, fmt.Errorf("the FunnelReceiver kind is not installed in this cluster (install funnel-operator's CRDs): %w", err)
		}
		return nil, fmt.Errorf("reading FunnelReceiver %s: %w", key, err)
	}
	tgt := &target{namespace: rcv.Namespace}
	var err error
	if tgt.url, err = receiverURL(&rcv, ov.url); err != nil {
		return nil, err
	}

	spec := rcv.Spec.Auth
	if spec.Token == nil && spec.HMAC == nil && !spec.InsecureSkipAuth {
		fmt.Fprintf(warn, "Warning: FunnelReceiver %s has no spec.auth.token or spec.auth.hmac: it refuses every request (503) unless spec.auth.insecureSkipAuth is true\n", key)
	}
	if t := spec.Token; t != nil {
		tgt.auth.TokenHeader = or(t.Header, funnelv1.DefaultTokenHeader)
		if ov.token != nil {
			tgt.auth.Token = *ov.token
		} else {
			value, err := secretValue(ctx, c, &rcv, "token", "--token", t.SecretRef)
			if err != nil {
				return nil, err
			}
			// A header cannot carry a newline; the receiver compares the
			// Secret verbatim, so a trailing one can never match.
			tgt.auth.Token = strings.TrimSpace(string(value))
			if tgt.auth.Token != string(value) {
				fmt.Fprintf(warn, "Warning: the token in Secret %s key %q has surrounding whitespace (a trailing newline?); the receiver compares it verbatim, so no request can match it\n", t.SecretRef.Name, t.SecretRef.Key)
			}
		}
	} else if ov.token != nil {
		fmt.Fprintf(warn, "Warning: FunnelReceiver %s has no spec.auth.token; sending --token in %s anyway\n", key, funnelv1.DefaultTokenHeader)
		tgt.auth.TokenHeader, tgt.auth.Token = funnelv1.DefaultTokenHeader, *ov.token
	}
	if h := spec.HMAC; h != nil {
		tgt.auth.HMACHeader = or(h.Header, funnelv1.DefaultHMACHeader)
		tgt.auth.HMACAlgorithm = string(h.Algorithm)
		if ov.hmacKey != nil {
			tgt.auth.HMACKey = []byte(*ov.hmacKey)
		} else if tgt.auth.HMACKey, err = secretValue(ctx, c, &rcv, "HMAC", "--hmac-key", h.SecretRef); err != nil {
			return nil, err
		}
	} else if ov.hmacKey != nil {
		fmt.Fprintf(warn, "Warning: FunnelReceiver %s has no spec.auth.hmac; signing with --hmac-key in %s anyway\n", key, funnelv1.DefaultHMACHeader)
		tgt.auth.HMACHeader, tgt.auth.HMACKey = funnelv1.DefaultHMACHeader, []byte(*ov.hmacKey)
	}

	if ov.format != "" && len(rcv.Spec.Formats) > 0 && !slices.Contains(rcv.Spec.Formats, funnelv1.EventFormat(ov.format)) {
		fmt.Fprintf(warn, "Warning: FunnelReceiver %s accepts only %v; it will refuse a %s body\n", key, rcv.Spec.Formats, ov.format)
	}
	if ready := meta.FindStatusCondition(rcv.Status.Conditions, funnelv1.ConditionReady); ready != nil && ready.Status != metav1.ConditionTrue {
		fmt.Fprintf(warn, "Warning: FunnelReceiver %s is not Ready (%s: %s); expect 503\n", key, ready.Reason, ready.Message)
	}
	return tgt, nil
}

// receiverURL is --url (with the receiver's path appended when it has
// none), else status.url.
func receiverURL(rcv *funnelv1.FunnelReceiver, flagURL string) (string, error) {
	path := or(rcv.Status.WebhookPath, rcv.WebhookPath())
	if flagURL != "" {
		u, err := webhookURL(flagURL, path)
		if err != nil {
			return "", fmt.Errorf("--url: %w", err)
		}
		return u, nil
	}
	if rcv.Status.URL == "" {
		return "", fmt.Errorf("FunnelReceiver %s/%s has no status.url (the operator was not told its external address): pass --url with the receiver's address, e.g. --url http://127.0.0.1:8080 through kubectl port-forward",
			rcv.Namespace, rcv.Name)
	}
	u, err := webhookURL(rcv.Status.URL, path)
	if err != nil {
		return "", fmt.Errorf("FunnelReceiver %s/%s status.url: %w", rcv.Namespace, rcv.Name, err)
	}
	return u, nil
}

// secretValue reads the key ref of a Secret the receiver's auth names. what
// ("token", "HMAC") and flag (the override) make the errors precise.
func secretValue(ctx context.Context, c client.Reader, rcv *funnelv1.FunnelReceiver, what, flag string, ref funnelv1.SecretKeyRef) ([]byte, error) {
	var secret corev1.Secret
	err := c.Get(ctx, types.NamespacedName{Namespace: rcv.Namespace, Name: ref.Name}, &secret)
	switch {
	case apierrors.IsNotFound(err):
		return nil, fmt.Errorf("FunnelReceiver %s/%s has no %s Secret %s: %w", rcv.Namespace, rcv.Name, what, ref.Name, err)
	case apierrors.IsForbidden(err):
		return nil, fmt.Errorf("reading the %s Secret %s of FunnelReceiver %s/%s (pass %s to send without reading it): %w", what, ref.Name, rcv.Namespace, rcv.Name, flag, err)
	case err != nil:
		return nil, fmt.Errorf("reading the %s Secret %s of FunnelReceiver %s/%s: %w", what, ref.Name, rcv.Namespace, rcv.Name, err)
	}
	value, ok := secret.Data[ref.Key]
	if !ok || len(value) == 0 {
		return nil, fmt.Errorf("FunnelReceiver %s/%s: %s Secret %s has no non-empty key %q", rcv.Namespace, rcv.Name, what, ref.Name, ref.Key)
	}
	return value, nil
}

// or returns s, or def when s is empty: defaults the API server applies
// may be missing on objects created before they existed.
func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// sendOne sends one event (Duplicate copies) and says what became of it.
func (o *sendOptions) sendOne(ctx context.Context, s *send.Sender, tgt *target, body []byte, env *funnel.Envelope, parseErr error) error {
	out := o.streams.Out
	if !o.quiet {
		if parseErr == nil {
			fmt.Fprintf(out, "POST %s  %s (%s)\n", tgt.url, env.Type, env.Format)
		} else {
			fmt.Fprintf(out, "POST %s  (not a Funnel envelope: %v; expect 400)\n", tgt.url, parseErr)
		}
	}
	results := s.SendCopies(ctx, body, o.duplicate)
	var failed []string
	for _, r := range results {
		a := r.Attempts[0]
		if !a.Acknowledged() {
			failed = append(failed, a.Failure())
		}
		switch {
		case o.quiet:
		case a.Code == 0:
			fmt.Fprintf(out, "no answer after %s: %v\n", roundDuration(a.Duration), a.Err)
		case a.Err != nil:
			fmt.Fprintf(out, "%d %s in %s: %s (%v)\n", a.Code, http.StatusText(a.Code), roundDuration(a.Duration), send.Snippet(a.Body), a.Err)
		default:
			fmt.Fprintf(out, "%d %s in %s: %s\n", a.Code, http.StatusText(a.Code), roundDuration(a.Duration), send.Snippet(a.Body))
		}
	}
	if name := results[0].Event; name != "" && len(failed) < len(results) {
		if o.quiet {
			fmt.Fprintln(out, name)
		} else {
			fmt.Fprintf(out, "FunnelEvent %s: kubectl get fev %s%s\n", name, name, nsFlag(tgt.namespace))
		}
	}
	switch {
	case ctx.Err() != nil:
		return fmt.Errorf("sending the event: %w", interrupted(ctx))
	case len(failed) == 1 && len(results) == 1:
		return fmt.Errorf("the receiver did not acknowledge the event: %s", failed[0])
	case len(failed) > 0:
		return fmt.Errorf("%d of %d copies of the event were not acknowledged", len(failed), len(results))
	}
	return nil
}

// webhookURL returns base with path appended when base has no path of its
// own, so that --url can be just the receiver's address. path "" means no
// default is known, and base must then name the endpoint in full.
func webhookURL(base, path string) (string, error) {
	u, err := url.Parse(base)
	if err != nil {
		return "", fmt.Errorf("invalid URL %q (want an absolute http:// or https:// URL, e.g. http://127.0.0.1:8080): %w", base, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("URL %q must be absolute, http:// or https://, e.g. http://127.0.0.1:8080", base)
	}
	if u.Path == "" || u.Path == "/" {
		if path == "" {
			return "", fmt.Errorf("URL %q has no path and no FunnelReceiver gives one: add the webhook path, e.g. %s/webhooks/default/funnel", base, strings.TrimSuffix(base, "/"))
		}
		u.Path, u.RawPath = path, ""
	}
	return u.String(), nil
}

func nsFlag(ns string) string {
	if ns == "" {
		return ""
	}
	return " -n " + ns
}

// interrupted is ctx's error with its cause (e.g. the signal), so that
// errors.Is(err, context.Canceled) still holds for the exit code.
func interrupted(ctx context.Context) error {
	if cause := context.Cause(ctx); cause != nil && cause != ctx.Err() {
		return fmt.Errorf("%w (%v)", ctx.Err(), cause)
	}
	return ctx.Err()
}
