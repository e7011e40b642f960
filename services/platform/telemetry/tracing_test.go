package telemetry

import (
	"strings"
	"testing"
)

func TestNewSpanExporterFollowsTheStandardVariables(t *testing.T) {
	for _, tc := range []struct {
		name    string
		env     map[string]string
		wantErr string
	}{
		{name: "otlp by default", env: map[string]string{}},
		{name: "otlp named", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}},
		{name: "console", env: map[string]string{"OTEL_TRACES_EXPORTER": "console"}},
		{name: "grpc refused", env: map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, wantErr: "http/protobuf only"},
		{name: "the traces variable wins", env: map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc"}, wantErr: `"grpc"`},
		{name: "unknown exporter refused", env: map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"}, wantErr: "otlp, console or none"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			exp, err := newSpanExporter(t.Context(), func(k string) string { return tc.env[k] })
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if err := exp.Shutdown(t.Context()); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestTracingRequested(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		want bool
	}{
		{env: map[string]string{}, want: false},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://jaeger:4318"}, want: true},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://jaeger:4318", "OTEL_SDK_DISABLED": "true"}, want: false},
		{env: map[string]string{"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://jaeger:4318"}, want: false},
		{env: map[string]string{"OTEL_TRACES_EXPORTER": "console"}, want: true},
	} {
		if got := tracingRequested(func(k string) string { return tc.env[k] }); got != tc.want {
			t.Errorf("tracingRequested(%v) = %v, want %v", tc.env, got, tc.want)
		}
	}
}
