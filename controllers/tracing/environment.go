package tracing

import (
	"context"
	"fmt"
	"strings"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
)

// ServiceName is the service.name the operator's spans report unless OTEL_SERVICE_NAME
// or OTEL_RESOURCE_ATTRIBUTES say otherwise.
const ServiceName = "funnel-operator"

// Exporter is what the environment asks tracing to export with.
type Exporter struct {
	// Protocol is "grpc" or "http/protobuf"; "" when tracing is off.
	Protocol string
}

// On reports whether the environment turns tracing on.
func (e Exporter) On() bool { return e.Protocol != "" }

// ExporterFromEnvironment reads the standard OTEL_* variables that decide whether the
// operator traces, and how it exports. Tracing is off unless configured: on when
// OTEL_TRACES_EXPORTER is "otlp", or is unset and an OTLP endpoint
// (OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) is; always off with
// OTEL_SDK_DISABLED=true or OTEL_TRACES_EXPORTER=none. The protocol is
// OTEL_EXPORTER_OTLP_TRACES_PROTOCOL or OTEL_EXPORTER_OTLP_PROTOCOL, http/protobuf by
// default as the specification says. A value the operator cannot honour is an error, not
// a silent fallback.
func ExporterFromEnvironment(getenv func(string) string) (Exporter, error) {
	if strings.EqualFold(strings.TrimSpace(getenv("OTEL_SDK_DISABLED")), "true") {
		return Exporter{}, nil
	}
	switch exporter := strings.TrimSpace(getenv("OTEL_TRACES_EXPORTER")); exporter {
	case "none":
		return Exporter{}, nil
	case "":
		if getenv("OTEL_EXPORTER_OTLP_ENDPOINT") == "" && getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") == "" {
			return Exporter{}, nil
		}
	case "otlp":
	default:
		return Exporter{}, fmt.Errorf("OTEL_TRACES_EXPORTER=%q: the operator exports traces with otlp (or none)", exporter)
	}
	variable, protocol := "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", strings.TrimSpace(getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"))
	if protocol == "" {
		variable, protocol = "OTEL_EXPORTER_OTLP_PROTOCOL", strings.TrimSpace(getenv("OTEL_EXPORTER_OTLP_PROTOCOL"))
	}
	switch protocol {
	case "":
		return Exporter{Protocol: "http/protobuf"}, nil
	case "grpc", "http/protobuf":
		return Exporter{Protocol: protocol}, nil
	default:
		return Exporter{}, fmt.Errorf("%s=%q: want grpc or http/protobuf", variable, protocol)
	}
}

// FromEnvironment returns the operator's tracing as the OTEL_* environment configures it
// (ExporterFromEnvironment), nil when it is off. The exporter reads the rest of the
// OTEL_EXPORTER_OTLP_* variables (endpoint, headers, certificates, timeout), the provider
// OTEL_TRACES_SAMPLER and OTEL_BSP_*, the resource OTEL_SERVICE_NAME and
// OTEL_RESOURCE_ATTRIBUTES. Shutdown flushes what is not exported yet.
func FromEnvironment(ctx context.Context, getenv func(string) string) (*Tracing, error) {
	e, err := ExporterFromEnvironment(getenv)
	if err != nil || !e.On() {
		return nil, err
	}
	var exp *otlptrace.Exporter
	if e.Protocol == "grpc" {
		exp, err = otlptracegrpc.New(ctx)
	} else {
		exp, err = otlptracehttp.New(ctx)
	}
	if err != nil {
		return nil, fmt.Errorf("creating the OTLP trace exporter (%s): %w", e.Protocol, err)
	}
	// Later options win: the environment names the service when it says so.
	res, err := resource.New(ctx, resource.WithAttributes(semconv.ServiceName(ServiceName)), resource.WithTelemetrySDK(), resource.WithFromEnv())
	if err != nil {
		return nil, fmt.Errorf("reading the trace resource from OTEL_RESOURCE_ATTRIBUTES: %w", err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	t := New(tp)
	t.shutdown = tp.Shutdown
	return t, nil
}
