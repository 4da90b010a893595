package reliability_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/funnel-operator/funnel-operator/api/funnel/send"
	"github.com/funnel-operator/funnel-operator/test/harness"
)

// tally counts outcomes by label, concurrently.
type tally struct {
	mu sync.Mutex
	m  map[string]int
}

func (t *tally) add(label string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m == nil {
		t.m = map[string]int{}
	}
	t.m[label]++
}

func (t *tally) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var parts []string
	for k, v := range t.m {
		parts = append(parts, fmt.Sprintf("%s %d", k, v))
	}
	slices.Sort(parts)
	return strings.Join(parts, ", ")
}

// attack runs fn in workers goroutines until ctx ends or fn has run max times in all;
// fn returns the label of its outcome.
func attack(ctx context.Context, wg *sync.WaitGroup, workers, max int, t *tally, fn func(context.Context) string) {
	var runs atomic.Int64
	for range workers {
		wg.Go(func() {
			defer GinkgoRecover()
			for ctx.Err() == nil && runs.Add(1) <= int64(max) {
				t.add(fn(ctx))
			}
		})
	}
}

// rawRequest writes a request head (and optional body) on a new connection, then trickles
// the rest one byte every interval, and reports how the server ended it.
func rawRequest(ctx context.Context, addr, head string, trickle []byte, interval time.Duration) string {
	d := net.Dialer{Timeout: time.Second}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return "dial error"
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()
	if _, err := io.WriteString(conn, head); err != nil {
		return "closed by server"
	}
	read := make(chan string, 1)
	go func() {
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			read <- "closed by server"
			return
		}
		_ = resp.Body.Close()
		read <- fmt.Sprintf("%d", resp.StatusCode)
	}()
	for _, b := range trickle {
		select {
		case r := <-read:
			return r
		case <-time.After(interval):
		}
		if _, err := conn.Write([]byte{b}); err != nil {
			break
		}
	}
	select {
	case r := <-read:
		return r
	case <-time.After(10 * time.Second):
		return "no answer within 10s"
	}
}

// Scenario 5: slowloris, slow bodies, oversized bodies, 1000 idle connections, deep
// nesting and invalid UTF-8, all at once, while a good sender keeps posting: good requests
// keep a p99 under 1 s, and the operator's memory stays bounded.
var _ = Describe("Slow and hostile clients", func() {
	It("stays responsive to good requests and bounded in memory", func() {
		duration := time.Duration(size(8, 30)) * time.Second
		f := newFixture("hostile", fixtureOptions{})
		op := f.ops[0]
		addr, path := op.WebhookAddr, "/webhooks/"+f.ns+"/"+harness.ReceiverName
		good := f.sender()
		good.Retries = 0
		warm := good.SendAll(ctx, bodies(20), 4)
		for _, r := range warm {
			Expect(r.Acknowledged()).To(BeTrue(), "warm-up: %v", r.Attempts)
		}
		rssBefore, err := op.RSS()
		Expect(err).NotTo(HaveOccurred())

		actx, stop := context.WithTimeout(ctx, duration)
		defer stop()
		var wg sync.WaitGroup
		var slowloris, slowBody, oversized, idle, deep, badUTF8 tally
		auth := "Authorization: Bearer " + f.rcv.Token + "\r\n"

		// Headers trickled: the server must drop them at ReadHeaderTimeout.
		attack(actx, &wg, 50, 1000, &slowloris, func(ctx context.Context) string {
			return rawRequest(ctx, addr, "POST "+path+" HTTP/1.1\r\nHost: funnel\r\n", []byte(strings.Repeat("X-Slow: 1\r\n", 50)), 200*time.Millisecond)
		})
		// Bodies trickled: bounded by the read timeout.
		attack(actx, &wg, 10, 200, &slowBody, func(ctx context.Context) string {
			return rawRequest(ctx, addr, "POST "+path+" HTTP/1.1\r\nHost: funnel\r\nContent-Type: application/json\r\n"+auth+"Content-Length: 1000\r\n\r\n{",
				bytes.Repeat([]byte(" "), 999), 100*time.Millisecond)
		})
		// 2 MiB bodies, declared and chunked (no Content-Length).
		big := append(append([]byte(`{"event":"renter.created","data":{"x":"`), bytes.Repeat([]byte("a"), 2<<20)...), `"}}`...)
		var chunked atomic.Bool
		attack(actx, &wg, 2, size(40, 300), &oversized, func(ctx context.Context) string {
			var body io.Reader = bytes.NewReader(big)
			if chunked.Swap(!chunked.Load()) {
				body = io.MultiReader(bytes.NewReader(big)) // hides the length: sent chunked
			}
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, f.url(0), body)
			req.Header.Set("Authorization", "Bearer "+f.rcv.Token)
			req.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return "error"
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			return fmt.Sprint(resp.StatusCode)
		})
		// 1000 connections that never send a byte, re-opened when the server drops them.
		var open, maxOpen atomic.Int64
		attack(actx, &wg, 1000, 1<<30, &idle, func(ctx context.Context) string {
			c, err := (&net.Dialer{Timeout: time.Second}).DialContext(ctx, "tcp", addr)
			if err != nil {
				return "dial error"
			}
			defer c.Close()
			if n := open.Add(1); n > maxOpen.Load() {
				maxOpen.Store(n)
			}
			defer open.Add(-1)
			stop := context.AfterFunc(ctx, func() { _ = c.Close() })
			defer stop()
			_, err = c.Read(make([]byte, 1))
			if ctx.Err() != nil {
				return "held to the end"
			}
			return fmt.Sprintf("closed by server (%v)", err != nil)
		})
		post := func(body []byte) func(context.Context) string {
			s := &send.Sender{Auth: send.Auth{Token: f.rcv.Token}}
			return func(ctx context.Context) string {
				a := s.Post(ctx, f.url(0), body, nil)
				if a.Code == 0 {
					return "error"
				}
				return fmt.Sprint(a.Code)
			}
		}
		deepBody := []byte(`{"event":"renter.created","data":{"x":` + strings.Repeat("[", 100000) + strings.Repeat("]", 100000) + `}}`)
		attack(actx, &wg, 2, size(100, 1000), &deep, post(deepBody))
		attack(actx, &wg, 2, size(100, 1000), &badUTF8, post([]byte("{\"event\":\"renter.\xff\xfe\",\"data\":{\"name\":\"\xc3\x28\"}}")))

		// The good sender, paced, and the memory, sampled, for the whole attack.
		var goodResults []send.Result
		var peak int64
		goodBodies := bodies(int(duration / (40 * time.Millisecond)))
		tick := time.NewTicker(40 * time.Millisecond)
		var goodWG sync.WaitGroup
		var mu sync.Mutex
		for i := 0; i < len(goodBodies) && actx.Err() == nil; i++ {
			<-tick.C
			if rss, err := op.RSS(); err == nil && rss > peak {
				peak = rss
			}
			goodWG.Go(func() {
				r := good.Send(ctx, goodBodies[i])
				mu.Lock()
				goodResults = append(goodResults, r)
				mu.Unlock()
			})
		}
		tick.Stop()
		goodWG.Wait()
		stop()
		wg.Wait()
		rssAfter, err := op.RSS()
		Expect(err).NotTo(HaveOccurred())
		Expect(op.Running()).To(BeTrue(), "the operator survived")

		var ds []time.Duration
		var failed []string
		for _, r := range goodResults {
			ds = append(ds, r.Attempts[0].Duration)
			if !r.Acknowledged() {
				failed = append(failed, r.Attempts[0].String())
			}
		}
		lat := send.LatencyOf(ds)
		p50, p99 := lat.P50, lat.P99
		notes := fmt.Sprintf("good: %d, p50 %s, p99 %s; RSS %d → peak %d → %d MiB; slowloris {%s}; slow body {%s}; 2 MiB bodies {%s}; idle conns (max %d open) {%s}; deep nesting {%s}; invalid UTF-8 {%s}",
			len(goodResults), p50.Round(time.Millisecond), p99.Round(time.Millisecond), rssBefore>>20, peak>>20, rssAfter>>20,
			&slowloris, &slowBody, &oversized, maxOpen.Load(), &idle, &deep, &badUTF8)
		GinkgoWriter.Println(notes)

		Expect(failed).To(BeEmpty(), "good requests not acknowledged during the attack")
		Expect(p99).To(BeNumerically("<", time.Second), "p99 of good requests")
		Expect(maxOpen.Load()).To(BeNumerically(">=", 900), "idle connections held open at once")
		Expect(slowloris.m).NotTo(HaveKey("no answer within 10s"))
		Expect(slowBody.m).NotTo(HaveKey("no answer within 10s"))
		for label := range oversized.m {
			Expect(label).To(BeElementOf("413", "error"), "oversized bodies")
		}
		Expect(oversized.m["413"]).To(BeNumerically(">", 0))
		Expect(deep.m).To(HaveKeyWithValue("400", BeNumerically(">", 0)))
		Expect(deep.m).To(HaveLen(1), "deep nesting answers")
		Expect(badUTF8.m).To(HaveKeyWithValue("400", BeNumerically(">", 0)))
		Expect(badUTF8.m).To(HaveLen(1), "invalid UTF-8 answers")
		// Bounded: a few hundred connections and requests in flight, not the bytes thrown at it.
		Expect(peak-rssBefore).To(BeNumerically("<", 200<<20), "RSS growth during the attack")
		Expect(rssAfter-rssBefore).To(BeNumerically("<", 200<<20), "RSS growth after the attack")

		all := append(warm, goodResults...)
		o := f.checkStored(all)
		f.waitFinal(o.stored, time.Minute)
		record(o.row("5. slow and hostile clients", duration, notes))
	})
})
