package harness

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/funnel-operator/funnel-operator/test/testenv"
)

// BuildOperator compiles ./cmd/manager into dir/manager and returns the binary's path.
func BuildOperator(dir string) (string, error) {
	bin := filepath.Join(dir, "manager")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/manager")
	cmd.Dir = testenv.Root()
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("harness: go build ./cmd/manager: %w\n%s", err, out)
	}
	return bin, nil
}

// OperatorOptions configure NewOperator.
type OperatorOptions struct {
	// Binary is the manager binary (BuildOperator).
	Binary string
	// Kubeconfig the operator uses (through $KUBECONFIG).
	Kubeconfig string
	// LogPath receives stdout and stderr of every start, appended.
	LogPath string
	// Args are extra flags; the bind addresses are set by NewOperator.
	Args []string
	// Env adds NAME=value entries to the operator's environment.
	Env []string
	// Pprof also serves net/http/pprof on a free port (Operator.PprofAddr).
	Pprof bool
}

// Operator is the manager binary run as a child process on free loopback ports.
type Operator struct {
	// WebhookAddr, ProbeAddr and MetricsAddr are host:port, fixed across restarts;
	// PprofAddr too, with OperatorOptions.Pprof ("" without).
	WebhookAddr, ProbeAddr, MetricsAddr, PprofAddr string
	// LogPath is where the output goes.
	LogPath string
	// Args and Env are the flags and extra environment of the next start; change them
	// between Stop and Start.
	Args, Env []string

	bin, kubeconfig string

	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{}
	exitErr error
	starts  int
}

// NewOperator picks the operator's ports; it does not start it.
func NewOperator(opts OperatorOptions) (*Operator, error) {
	if opts.Binary == "" || opts.Kubeconfig == "" || opts.LogPath == "" {
		return nil, errors.New("harness: OperatorOptions needs Binary, Kubeconfig and LogPath")
	}
	addrs, err := FreeAddrs(4)
	if err != nil {
		return nil, fmt.Errorf("harness: finding free loopback ports: %w", err)
	}
	op := &Operator{WebhookAddr: addrs[0], ProbeAddr: addrs[1], MetricsAddr: addrs[2], LogPath: opts.LogPath,
		Args: slices.Clone(opts.Args), Env: slices.Clone(opts.Env), bin: opts.Binary, kubeconfig: opts.Kubeconfig}
	if opts.Pprof {
		op.PprofAddr = addrs[3]
	}
	return op, nil
}

// WebhookURL is the URL of a receiver on this replica.
func (o *Operator) WebhookURL(namespace, receiver string) string {
	return "http://" + o.WebhookAddr + "/webhooks/" + namespace + "/" + receiver
}

// Start runs the operator in its own process group, killed by the kernel if the test
// process dies.
func (o *Operator) Start() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.cmd != nil && !isClosed(o.exited) {
		return errors.New("harness: the operator is already running")
	}
	logFile, err := os.OpenFile(o.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	o.starts++
	args := []string{
		"--webhook-bind-address=" + o.WebhookAddr,
		"--health-probe-bind-address=" + o.ProbeAddr,
		"--metrics-bind-address=" + o.MetricsAddr,
	}
	if o.PprofAddr != "" {
		args = append(args, "--pprof-bind-address="+o.PprofAddr)
	}
	args = append(args, o.Args...)
	fmt.Fprintf(logFile, "=== harness: start %d: %s %s\n", o.starts, o.bin, strings.Join(args, " "))
	cmd := exec.Command(o.bin, args...)
	cmd.Env = append(append(os.Environ(), "KUBECONFIG="+o.kubeconfig), o.Env...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		_ = logFile.Close()
		return fmt.Errorf("harness: starting %s: %w", o.bin, err)
	}
	exited := make(chan struct{})
	o.cmd, o.exited, o.exitErr = cmd, exited, nil
	go func() {
		err := cmd.Wait()
		_ = logFile.Close()
		o.mu.Lock()
		o.exitErr = err
		o.mu.Unlock()
		close(exited)
	}()
	return nil
}

// Running reports whether the process is alive.
func (o *Operator) Running() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.cmd != nil && !isClosed(o.exited)
}

// Err is the error of the last run's exit (nil while it runs, before the first start, and
// after a clean exit).
func (o *Operator) Err() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.cmd == nil || !isClosed(o.exited) {
		return nil
	}
	return o.exitErr
}

// PID is the process id of the current run.
func (o *Operator) PID() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.cmd == nil {
		return 0
	}
	return o.cmd.Process.Pid
}

// Kill sends SIGKILL to the process group and waits for the exit.
func (o *Operator) Kill() { o.signal(syscall.SIGKILL, 0) }

// Stop sends SIGTERM and waits up to timeout, then SIGKILL.
func (o *Operator) Stop(timeout time.Duration) { o.signal(syscall.SIGTERM, timeout) }

func (o *Operator) signal(sig syscall.Signal, timeout time.Duration) {
	o.mu.Lock()
	cmd, exited := o.cmd, o.exited
	o.mu.Unlock()
	if cmd == nil || isClosed(exited) {
		return
	}
	_ = syscall.Kill(-cmd.Process.Pid, sig)
	if sig != syscall.SIGKILL {
		select {
		case <-exited:
			return
		case <-time.After(timeout):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		}
	}
	<-exited
}

// Restart stops (SIGTERM, 10 s), starts and waits until ready.
func (o *Operator) Restart(ctx context.Context, timeout time.Duration) error {
	o.Stop(10 * time.Second)
	if err := o.Start(); err != nil {
		return err
	}
	return o.WaitReady(ctx, timeout)
}

// WaitReady polls /readyz until it answers 200, the process exits or timeout passes.
func (o *Operator) WaitReady(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	last := "no answer yet"
	for {
		if !o.Running() {
			return fmt.Errorf("harness: the operator exited (%v); its log ends with:\n%s", o.Err(), o.LogTail(20))
		}
		code, body, err := get(ctx, "http://"+o.ProbeAddr+"/readyz")
		switch {
		case err == nil && code == http.StatusOK:
			return nil
		case err != nil:
			last = err.Error()
		default:
			last = fmt.Sprintf("%d %s", code, strings.TrimSpace(body))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("harness: /readyz not 200 within %s (last: %s); the log ends with:\n%s", timeout, last, o.LogTail(20))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Alive is nil while the process runs, else an error with how it exited and the end of
// its log.
func (o *Operator) Alive() error {
	if o.Running() {
		return nil
	}
	err := o.Err()
	if err == nil {
		err = errors.New("exit status 0")
	}
	return fmt.Errorf("harness: the operator exited (%v); its log ends with:\n%s", err, o.LogTail(15))
}

// Profile saves a net/http/pprof profile (path such as "/debug/pprof/heap?gc=1") to file;
// it needs OperatorOptions.Pprof.
func (o *Operator) Profile(ctx context.Context, path, file string) error {
	if o.PprofAddr == "" {
		return errors.New("harness: the operator runs without --pprof-bind-address (OperatorOptions.Pprof)")
	}
	return FetchTo(ctx, http.DefaultClient, "http://"+o.PprofAddr+path, file)
}

// FetchTo GETs url with c and writes the body to file.
func FetchTo(ctx context.Context, c *http.Client, url, file string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("GET %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		line, _, _ := strings.Cut(string(b), "\n")
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, line)
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		_ = f.Close()
		return fmt.Errorf("GET %s: %w", url, err)
	}
	return f.Close()
}

// Metrics scrapes /metrics.
func (o *Operator) Metrics(ctx context.Context) (map[string]*dto.MetricFamily, error) {
	code, body, err := get(ctx, "http://"+o.MetricsAddr+"/metrics")
	if err != nil {
		return nil, fmt.Errorf("harness: scraping metrics: %w", err)
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("harness: scraping metrics: HTTP %d", code)
	}
	return ParseMetrics([]byte(body))
}

// ParseMetrics parses the Prometheus text exposition format.
func ParseMetrics(body []byte) (map[string]*dto.MetricFamily, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("parsing metrics: %w", err)
	}
	return fams, nil
}

// Labels are the label pairs of one series, as a map.
func Labels(m *dto.Metric) map[string]string {
	out := make(map[string]string, len(m.GetLabel()))
	for _, lp := range m.GetLabel() {
		out[lp.GetName()] = lp.GetValue()
	}
	return out
}

// Sum adds the values (counter, gauge or untyped) of the family's series whose labels
// include every pair of match. A missing family sums to 0.
func Sum(families map[string]*dto.MetricFamily, name string, match func(labels map[string]string) bool) float64 {
	f := families[name]
	if f == nil {
		return 0
	}
	total := 0.0
	for _, m := range f.GetMetric() {
		if match != nil && !match(Labels(m)) {
			continue
		}
		switch {
		case m.Counter != nil:
			total += m.Counter.GetValue()
		case m.Gauge != nil:
			total += m.Gauge.GetValue()
		case m.Untyped != nil:
			total += m.Untyped.GetValue()
		}
	}
	return total
}

// RSS is the resident set size of the process (VmRSS of /proc/<pid>/status), in bytes.
func (o *Operator) RSS() (int64, error) { return RSSOf(o.PID()) }

// RSSOf reads VmRSS of a process, in bytes.
func RSSOf(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			fields := strings.Fields(rest)
			if len(fields) != 2 || fields[1] != "kB" {
				return 0, fmt.Errorf("harness: unexpected VmRSS line %q", sc.Text())
			}
			kb, err := strconv.ParseInt(fields[0], 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("harness: /proc/%d/status has no VmRSS", pid)
}

// Log returns everything the operator wrote so far, every start included.
func (o *Operator) Log() ([]byte, error) { return os.ReadFile(o.LogPath) }

// LogTail returns the last n lines of the log, for failure messages, each cut at 400 bytes.
func (o *Operator) LogTail(n int) string {
	b, err := o.Log()
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	for i, l := range lines {
		if len(l) > 400 {
			lines[i] = append(l[:400:400], "…"...)
		}
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// get GETs url with a short timeout.
func get(ctx context.Context, url string) (int, string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	return resp.StatusCode, string(b), err
}

func isClosed(c chan struct{}) bool {
	if c == nil {
		return true
	}
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// FreeAddrs returns n distinct 127.0.0.1:port addresses free right now.
func FreeAddrs(n int) ([]string, error) {
	var out []string
	var lns []net.Listener
	defer func() {
		for _, l := range lns {
			_ = l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, l)
		out = append(out, l.Addr().String())
	}
	return out, nil
}
