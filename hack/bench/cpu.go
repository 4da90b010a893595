package main

import (
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat: 100 on every
// Linux architecture Go runs on.
const clockTicks = 100

// cpuSample is the CPU time used so far by the bench and by each process it started,
// keyed by component: bench, apiserver, etcd, operator, postgres; and the machine's total.
type cpuSample struct {
	at      time.Time
	seconds map[string]float64
	total   float64
	procs   cpuProcs
}

// cpuProcs tells sampleCPU which processes are whose, beyond the bench's children named
// kube-apiserver and etcd.
type cpuProcs struct {
	// operator is the operator's command name, as /proc shows it (operatorComm).
	operator string
	// postmaster is the PostgreSQL server the bench started (0: none): pg_ctl detaches it,
	// so it is no child of the bench; it and its children count as "postgres".
	postmaster int
}

// operatorComm is the command name /proc gives a process run from binary: the file's
// name, cut to 15 bytes. Matching it, not "manager", counts any --manager build as the
// operator (a before/after comparison runs two differently named binaries).
func operatorComm(binary string) string {
	name := filepath.Base(binary)
	return name[:min(len(name), 15)]
}

// otherKey names the CPU the machine spent outside the bench and its children: other
// people's work on a shared machine, and kernel time not charged to a process.
const otherKey = "other"

// sampleCPU reads /proc/<pid>/stat of this process and of its children, and of the
// postmaster (when not 0) and its children.
func sampleCPU(procs cpuProcs) cpuSample {
	s := cpuSample{at: time.Now(), seconds: map[string]float64{}, procs: procs}
	self := os.Getpid()
	if _, _, secs, ok := procStat(self); ok {
		s.seconds["bench"] += secs
	}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		comm, ppid, secs, ok := procStat(pid)
		if ok && procs.postmaster != 0 && (pid == procs.postmaster || ppid == procs.postmaster) {
			s.seconds["postgres"] += secs
			continue
		}
		if !ok || ppid != self {
			continue
		}
		switch comm {
		case procs.operator:
			comm = "operator"
		case "kube-apiserver":
			comm = "apiserver"
		}
		s.seconds[comm] += secs
	}
	s.total = machineBusySeconds()
	return s
}

// machineBusySeconds is the CPU time all cores spent busy since boot (/proc/stat).
func machineBusySeconds() float64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return math.NaN()
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return math.NaN()
	}
	busy := 0.0
	// user nice system idle iowait irq softirq steal: all but idle and iowait.
	for i, v := range f[1:9] {
		if i == 3 || i == 4 {
			continue
		}
		n, _ := strconv.ParseFloat(v, 64)
		busy += n
	}
	return busy / clockTicks
}

// procStat returns a process's command name, parent and CPU seconds (user + system).
func procStat(pid int) (comm string, ppid int, secs float64, ok bool) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return "", 0, 0, false
	}
	s := string(b)
	open, closing := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || closing < open {
		return "", 0, 0, false
	}
	comm = s[open+1 : closing]
	// After ") ": state(3) ppid(4) ... utime(14) stime(15), numbered from pid = 1.
	f := strings.Fields(s[closing+1:])
	if len(f) < 13 {
		return "", 0, 0, false
	}
	ppid, _ = strconv.Atoi(f[1])
	utime, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	return comm, ppid, (utime + stime) / clockTicks, true
}

// coresSince returns the cores each component used on average since before.
func coresSince(before cpuSample) map[string]float64 {
	return coresBetween(before, sampleCPU(before.procs))
}

// coresBetween returns the cores each component used on average from before to after.
func coresBetween(before, after cpuSample) map[string]float64 {
	secs := after.at.Sub(before.at).Seconds()
	out := map[string]float64{}
	if secs <= 0 {
		return out
	}
	ours := 0.0
	for k, d := range after.secondsSince(before) {
		ours += d
		out[k] = math.Round(d/secs*100) / 100
	}
	if other := after.total - before.total - ours; !math.IsNaN(other) {
		out[otherKey] = math.Round(max(other, 0)/secs*100) / 100
	}
	return out
}

// secondsSince is the CPU seconds each component of s used since before.
func (s cpuSample) secondsSince(before cpuSample) map[string]float64 {
	out := make(map[string]float64, len(s.seconds))
	for k, v := range s.seconds {
		out[k] = v - before.seconds[k]
	}
	return out
}

// msPerOp divides the CPU seconds each component used by ops, in milliseconds per
// operation; with ops 0 it is empty.
func msPerOp(secs map[string]float64, ops int) map[string]float64 {
	out := map[string]float64{}
	if ops <= 0 {
		return out
	}
	for k, v := range secs {
		out[k] = math.Round(v*1e6/float64(ops)) / 1e3
	}
	return out
}
