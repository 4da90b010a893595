package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	dto "github.com/prometheus/client_model/go"
)

// operator is bin/manager run as a child process on free loopback ports.
type operator struct {
	bin        string
	kubeconfig string
	logPath    string
	args       []string

	webhookAddr, probeAddr, metricsAddr string
	// pprofAddr is the manager's pprof endpoint (--pprof-bind-address): profiles, and a
	// forced GC before memory readings.
	pprofAddr string

	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{}
	exitErr error
	starts  int
}

// newOperator picks free ports and checks the binary. The operator watches only
// namespaces (--namespaces) and elects a leader with a Lease in nsOperator.
func newOperator(o options, kubeconfig, dir string, namespaces []string) (*operator, error) {
	bin, err := filepath.Abs(o.manager)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("the operator binary: %w (make bench builds it; or set --manager)", err)
	}
	op := &operator{bin: bin, kubeconfig: kubeconfig, logPath: filepath.Join(dir, "operator.log")}
	ports, err := freePorts(4)
	if err != nil {
		return nil, fmt.Errorf("finding free loopback ports: %w", err)
	}
	op.webhookAddr, op.probeAddr, op.metricsAddr, op.pprofAddr = ports[0], ports[1], ports[2], ports[3]
	op.args = []string{
		"--webhook-bind-address=" + op.webhookAddr,
		"--health-probe-bind-address=" + op.probeAddr,
		"--metrics-bind-address=" + op.metricsAddr,
		"--pprof-bind-address=" + op.pprofAddr,
		"--kube-api-qps=" + strconv.Itoa(o.operatorQPS),
		"--kube-api-burst=" + strconv.Itoa(o.operatorBurst),
		"--leader-elect",
		"--leader-election-namespace=" + nsOperator,
		"--namespaces=" + strings.Join(namespaces, ","),
		"--zap-log-level=error",
		// Restarts need not wait for the default 30 s.
		"--graceful-shutdown-timeout=5s",
	}
	op.args = append(op.args, o.operatorArgs...)
	return op, nil
}

// freePorts returns n distinct 127.0.0.1:port addresses free right now.
func freePorts(n int) ([]string, error) {
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

// start runs the operator in its own process group (so a terminal's Ctrl-C reaches only
// the bench, which stops it in order), killed by the kernel if the bench dies.
func (op *operator) start() error {
	op.mu.Lock()
	defer op.mu.Unlock()
	logFile, err := os.OpenFile(op.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("opening the operator log: %w", err)
	}
	op.starts++
	fmt.Fprintf(logFile, "=== start %d: %s %s\n", op.starts, op.bin, strings.Join(op.args, " "))
	cmd := exec.Command(op.bin, op.args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+op.kubeconfig)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		_ = logFile.Close()
		return fmt.Errorf("starting %s: %w", op.bin, err)
	}
	exited := make(chan struct{})
	op.cmd, op.exited, op.exitErr = cmd, exited, nil
	go func() {
		err := cmd.Wait()
		_ = logFile.Close()
		op.mu.Lock()
		op.exitErr = err
		op.mu.Unlock()
		close(exited)
	}()
	return nil
}

// stop sends SIGTERM and waits; after 20 s it kills the process group.
func (op *operator) stop() {
	op.mu.Lock()
	cmd, exited := op.cmd, op.exited
	op.mu.Unlock()
	if cmd == nil {
		return
	}
	select {
	case <-exited:
		return
	default:
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(20 * time.Second):
		logf("the operator did not stop within 20 s of SIGTERM: killing it")
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
	}
}

// restart stops and starts the operator and waits until it is ready.
func (op *operator) restart(ctx context.Context) error {
	op.stop()
	if err := op.start(); err != nil {
		return err
	}
	return op.waitReady(ctx, 90*time.Second)
}

// alive returns an error describing the exit when the operator is no longer running.
func (op *operator) alive() error {
	op.mu.Lock()
	exited, exitErr := op.exited, op.exitErr
	op.mu.Unlock()
	select {
	case <-exited:
		if exitErr == nil {
			exitErr = errors.New("exit status 0")
		}
		return fmt.Errorf("the operator exited (%v); last lines of its log:\n%s", exitErr, op.logTail(15))
	default:
		return nil
	}
}

func (op *operator) pid() int {
	op.mu.Lock()
	defer op.mu.Unlock()
	return op.cmd.Process.Pid
}

// waitReady polls /readyz until it answers 200.
func (op *operator) waitReady(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last string
	for {
		if err := op.alive(); err != nil {
			return err
		}
		code, body, err := httpGet(ctx, "http://"+op.probeAddr+"/readyz")
		switch {
		case err == nil && code == http.StatusOK:
			return nil
		case err != nil:
			last = err.Error()
		default:
			last = fmt.Sprintf("%d %s", code, firstLine(body))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the operator's /readyz did not answer 200 within %s (last: %s); last lines of its log:\n%s", timeout, last, op.logTail(15))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// metrics scrapes the operator's /metrics.
func (op *operator) metrics(ctx context.Context) (map[string]*dto.MetricFamily, error) {
	code, body, err := httpGet(ctx, "http://"+op.metricsAddr+"/metrics")
	if err != nil {
		return nil, fmt.Errorf("reading the operator's metrics: %w", err)
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("reading the operator's metrics: %d %s", code, firstLine(body))
	}
	return parseMetrics([]byte(body))
}

// rss reads the operator's resident set size from /proc/<pid>/status (VmRSS), in bytes.
func (op *operator) rss() (int64, error) {
	pid := op.pid()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("reading the operator's memory: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) != 2 || f[1] != "kB" {
				return 0, fmt.Errorf("/proc/%d/status: unexpected VmRSS line %q", pid, sc.Text())
			}
			kb, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("/proc/%d/status: %w", pid, err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("/proc/%d/status has no VmRSS line", pid)
}

// profile fetches a pprof profile from the operator.
func (op *operator) profile(ctx context.Context, path, file string) error {
	return fetchTo(ctx, http.DefaultClient, "http://"+op.pprofAddr+path, file)
}

// keepLog copies the operator's log to file (when the run keeps profiles).
func (op *operator) keepLog(file string) {
	b, err := os.ReadFile(op.logPath)
	if err == nil {
		err = os.WriteFile(file, b, 0o644)
	}
	if err != nil {
		logf("keeping the operator log: %v", err)
		return
	}
	logf("operator log kept in %s", file)
}

// logTail returns the last n lines of the operator's log.
func (op *operator) logTail(n int) string {
	b, err := os.ReadFile(op.logPath)
	if err != nil {
		return "  (no log: " + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	for i, l := range lines {
		if len(l) > 400 {
			l = l[:400] + "…"
		}
		lines[i] = "  " + l
	}
	return strings.Join(lines, "\n")
}

// httpGet GETs url with a short timeout and returns the status and (start of the) body.
func httpGet(ctx context.Context, url string) (int, string, error) {
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
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	return resp.StatusCode, string(body), err
}

// fetchTo GETs url with c and writes the body to file.
func fetchTo(ctx context.Context, c *http.Client, url, file string) error {
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
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, firstLine(string(b)))
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
