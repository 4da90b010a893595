package main

import (
	"image/png"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/funnel-operator/funnel-operator/hack/tools/prometheus/grafana"
)

func TestFormat(t *testing.T) {
	tests := []struct {
		unit string
		v    float64
		want string
	}{
		{"s", 0, "0"},
		{"s", 0.0042, "4ms"},
		{"s", 2.5, "2.5s"},
		{"s", 90, "1.5min"},
		{"s", 7200, "2h"},
		{"reqps", 1500, "1.5k req/s"},
		{"ops", 0.25, "0.25/s"},
		{"percentunit", 0.995, "99.5%"},
		{"short", 3, "3"},
		{"none", 2_000_000, "2M"},
	}
	for _, tt := range tests {
		if got := format(tt.unit, tt.v); got != tt.want {
			t.Errorf("format(%q, %v) = %q, want %q", tt.unit, tt.v, got, tt.want)
		}
	}
}

// TestDrawFollowsTheGrid: the picture is as wide as the 24 columns and as tall as the
// lowest panel, whatever the data.
func TestDrawFollowsTheGrid(t *testing.T) {
	one := 1.0
	d := &grafana.Dashboard{Title: "test", Panels: []grafana.Panel{
		{Type: "row", Title: "Row", GridPos: grafana.GridPos{W: 24, H: 1}},
		{Type: "stat", Title: "Leader", GridPos: grafana.GridPos{Y: 1, W: 4, H: 4}},
		{Type: "timeseries", Title: "Lines", GridPos: grafana.GridPos{Y: 5, W: 12, H: 8}},
		{Type: "timeseries", Title: "Empty", GridPos: grafana.GridPos{X: 12, Y: 5, W: 12, H: 8}},
	}}
	d.Panels[1].FieldConfig.Defaults.Thresholds.Steps = []grafana.Threshold{{Color: "red"}, {Color: "green", Value: &one}}
	start := time.Unix(1_800_000_000, 0)
	data := map[int]panelData{
		1: {value: 1, ok: true},
		2: {series: []series{{legend: "a", times: []time.Time{start, start.Add(time.Minute)}, values: []float64{1, 3}}}},
	}
	out := filepath.Join(t.TempDir(), "d.png")
	if err := drawDashboard(d, data, "caption", start, start.Add(time.Minute), out); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	// 96 dpi: a point is 4/3 pixel.
	wantW, wantH := int((24*colWidth+gap)*96/72), int((headHeight+13*unitHeight+gap)*96/72)
	if b := img.Bounds(); b.Dx() != wantW || b.Dy() != wantH {
		t.Errorf("picture %dx%d, want %dx%d", b.Dx(), b.Dy(), wantW, wantH)
	}
}
