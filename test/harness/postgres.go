package harness

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// PostgresOptions configure StartPostgres.
type PostgresOptions struct {
	// Dir holds the data directory, the server's socket and its log. Empty: a new
	// temporary directory, removed by Stop. Given: kept, and reused when it already holds
	// a database (make run's .local/postgres).
	Dir string
	// Port is the loopback TCP port; a free one when 0.
	Port int
}

// Postgres is a PostgreSQL server of its own, on loopback, for tests and make run.
type Postgres struct {
	// URL connects to the database "postgres" as the superuser "postgres" over TCP.
	URL string
	// Port is the server's TCP port on 127.0.0.1, the same across StopServer/StartServer.
	Port int
	// Dir holds the data directory (Dir/data), the socket and the log (Dir/postgres.log).
	Dir string

	bin     string
	ownsDir bool
}

// PostgresBinDir finds the PostgreSQL server binaries: the directory of initdb on $PATH,
// else Debian's /usr/lib/postgresql/<major>/bin, the newest first.
func PostgresBinDir() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p), nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	for i := len(dirs) - 1; i >= 0; i-- {
		if _, err := os.Stat(filepath.Join(dirs[i], "initdb")); err == nil {
			return dirs[i], nil
		}
	}
	return "", errors.New("harness: PostgreSQL server binaries (initdb, pg_ctl) not found on $PATH or in /usr/lib/postgresql/*/bin: install PostgreSQL 15 (Debian: apt-get install postgresql)")
}

// StartPostgres initialises a data directory (unless Dir already holds one) and starts a
// server on 127.0.0.1 with trust authentication, which only loopback clients can reach.
// PostgreSQL refuses to run as root: as root, the server runs as the user "postgres",
// which then owns Dir.
func StartPostgres(ctx context.Context, opts PostgresOptions) (*Postgres, error) {
	bin, err := PostgresBinDir()
	if err != nil {
		return nil, err
	}
	p := &Postgres{Dir: opts.Dir, Port: opts.Port, bin: bin}
	if p.Dir == "" {
		if p.Dir, err = os.MkdirTemp("", "funnel-postgres-"); err != nil {
			return nil, fmt.Errorf("harness: creating the PostgreSQL directory: %w", err)
		}
		p.ownsDir = true
	} else if err := os.MkdirAll(p.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("harness: creating the PostgreSQL directory: %w", err)
	}
	if err := p.chown(p.Dir); err != nil {
		p.cleanup()
		return nil, err
	}
	if p.Port == 0 {
		addrs, err := FreeAddrs(1)
		if err != nil {
			p.cleanup()
			return nil, fmt.Errorf("harness: finding a free port for PostgreSQL: %w", err)
		}
		_, port, _ := net.SplitHostPort(addrs[0])
		p.Port, _ = strconv.Atoi(port)
	}
	p.URL = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", p.Port)
	if _, err := os.Stat(filepath.Join(p.Dir, "data", "PG_VERSION")); err != nil {
		if err := p.run(ctx, "initdb", "-D", filepath.Join(p.Dir, "data"), "-U", "postgres", "-A", "trust",
			"-E", "UTF8", "--locale=C", "--no-sync"); err != nil {
			p.cleanup()
			return nil, err
		}
	}
	if err := p.StartServer(ctx); err != nil {
		p.cleanup()
		return nil, err
	}
	return p, nil
}

// StartServer starts the server (again) on the same port and waits until it accepts
// connections.
func (p *Postgres) StartServer(ctx context.Context) error {
	// A throwaway server: surviving the machine's power loss is not what it is for
	// (fsync=off), surviving its own crash is (StopServer): commits stay synchronous.
	serverOpts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off", p.Port, p.Dir)
	if err := p.run(ctx, "pg_ctl", "start", "-w", "-t", "60", "-D", filepath.Join(p.Dir, "data"),
		"-l", filepath.Join(p.Dir, "postgres.log"), "-o", serverOpts); err != nil {
		return err
	}
	return p.waitReady(ctx)
}

// StopServer stops the server at once, as a crash would (clients see their connections
// drop); the data stays for StartServer.
func (p *Postgres) StopServer(ctx context.Context) error {
	return p.run(ctx, "pg_ctl", "stop", "-w", "-m", "immediate", "-D", filepath.Join(p.Dir, "data"))
}

// Stop stops the server and removes its directory when StartPostgres created it.
func (p *Postgres) Stop() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := p.run(ctx, "pg_ctl", "stop", "-w", "-m", "fast", "-D", filepath.Join(p.Dir, "data"))
	p.cleanup()
	return err
}

// CreateDatabase creates a database and returns a URL for it: one per suite or spec.
func (p *Postgres) CreateDatabase(ctx context.Context, name string) (string, error) {
	conn, err := pgx.Connect(ctx, p.URL)
	if err != nil {
		return "", fmt.Errorf("harness: connecting to PostgreSQL: %w", err)
	}
	defer func() { _ = conn.Close(context.Background()) }()
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", fmt.Errorf("harness: creating database %s: %w", name, err)
	}
	return strings.Replace(p.URL, "/postgres?", "/"+name+"?", 1), nil
}

// waitReady connects until the server answers: pg_ctl -w returns once the postmaster is
// up, which can be a moment before it accepts TCP connections.
func (p *Postgres) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for {
		conn, err := pgx.Connect(ctx, p.URL)
		if err == nil {
			return conn.Close(ctx)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("harness: PostgreSQL on port %d does not accept connections: %w", p.Port, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// run runs a PostgreSQL program, as the user "postgres" when we are root.
func (p *Postgres) run(ctx context.Context, program string, args ...string) error {
	path := filepath.Join(p.bin, program)
	var cmd *exec.Cmd
	if os.Geteuid() == 0 {
		cmd = exec.CommandContext(ctx, "runuser", append([]string{"-u", "postgres", "--", path}, args...)...)
	} else {
		cmd = exec.CommandContext(ctx, path, args...)
	}
	// The server's working directory must be one it may enter.
	cmd.Dir = p.Dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("harness: %s %s: %w\n%s", program, strings.Join(args, " "), err, out)
	}
	return nil
}

// chown gives dir to the user "postgres" when we are root: the server runs as that user.
func (p *Postgres) chown(dir string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return fmt.Errorf("harness: PostgreSQL refuses to run as root, and there is no user postgres to run it as: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.Chown(dir, uid, gid); err != nil {
		return fmt.Errorf("harness: giving %s to the user postgres: %w", dir, err)
	}
	return nil
}

// cleanup removes the directory when it is ours.
func (p *Postgres) cleanup() {
	if p.ownsDir {
		_ = os.RemoveAll(p.Dir)
	}
}
