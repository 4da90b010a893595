// Package harness runs the real processes of funnel-operator for tests and benchmarks:
// a local control plane, the operator binary as a child process, an HTTP target that
// records deliveries, and realistic Funnel events to send.
// Everything listens on loopback only.
//
// # Control plane
//
// StartControlPlane starts etcd and kube-apiserver through testenv.StartControlPlane, the
// project's one starter (the envtest suites, `make run` and `make bench` use it too), with
// the CRDs of config/crd/bases. The API server keeps its address and certificate
// directory, so StopAPIServer (a SIGKILL, like a crash) and StartAPIServer take it down
// and bring it back where its clients, the operator included, reconnect by themselves.
// ControlPlaneOptions.AuditPolicy (AuditPolicyFor a user) turns on the audit log
// (ControlPlane.AuditLog); UsedPermissions reads it back and GrantedPermissions expands
// Roles and ClusterRoles, to compare the two.
//
//	cp, err := harness.StartControlPlane(harness.ControlPlaneOptions{Dir: dir})
//	defer cp.Stop()
//	cp.Client.Create(ctx, obj)           // admin, no client-side rate limit
//	cp.StopAPIServer(); cp.StartAPIServer()
//
// NewReceiver makes a namespace's FunnelReceiver "funnel" with a random token (and HMAC
// key) in a Secret; Receiver.Auth authenticates to it and WaitReady waits for the
// operator to report it Ready.
//
// # Operator
//
// BuildOperator compiles ./cmd/manager once; NewOperator gives it free loopback ports
// for the webhook, probe and metrics endpoints, and Start runs it in its own process
// group with its output appended to a log file (Operator.LogPath). Kill (SIGKILL),
// Stop (SIGTERM), Restart and WaitReady (/readyz) drive it; Metrics scrapes /metrics and
// RSS reads VmRSS from /proc; Sum adds up a metric's series.
//
//	bin, err := harness.BuildOperator(dir)
//	op, err := harness.NewOperator(harness.OperatorOptions{Binary: bin, Kubeconfig: cp.Kubeconfig,
//		LogPath: filepath.Join(dir, "operator.log"), Args: []string{"--namespaces=" + ns}})
//	op.Start(); op.WaitReady(ctx, time.Minute)
//	op.WebhookURL(ns, "funnel")           // where Funnel would post
//
// # Sink and events
//
// Sink is an HTTP target for FunnelSubscription actions that records every request with
// its Idempotency-Key and event headers; Hold makes it a target that never answers
// (until Release). StartSlowBody is a client holding a receiver slot with a body that
// never arrives. Events makes realistic bodies (api/funnel/synth)
// for the project's one sender, api/funnel/send, which posts them like Funnel does:
//
//	bodies, err := harness.Events(seed, 100)
//	s := &send.Sender{URLs: []string{op.WebhookURL(ns, "funnel")}, Auth: send.Auth{Token: token}, Retries: send.FunnelRetries}
//	results := s.SendAll(ctx, bodies, 8)
//	send.Acknowledged(results)              // names answered 200 "Funnel Event Received"
//
// # PostgreSQL
//
// StartPostgres runs a PostgreSQL of its own on loopback (as the user postgres when run
// as root), for the archive's suites, `make run` and the bench; CreateDatabase gives a
// spec its own database. StartArchive adds the operator's archive store, migrated, for
// the suites of its readers (backfills, the history API):
//
//	db, err := harness.StartArchive(ctx)
//	defer db.Stop()
//	db.Store.Write(ctx, events)
//
// Nothing here uses Ginkgo or testing: a benchmark program can use it as well.
package harness
