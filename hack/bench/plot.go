package main

import (
	"bytes"
	"fmt"
	"image/color"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// plotScaling draws the scaling curve as a PNG: achieved vs. offered rate (with the
// shed 503s) on top, p50/p99 answer time below, sharing the offered-rate axis.
func plotScaling(s *scalingResult) ([]byte, error) {
	n := len(s.Points)
	offered, achieved, shedRate := make(plotter.XYs, n), make(plotter.XYs, n), make(plotter.XYs, n)
	p50, p99 := make(plotter.XYs, n), make(plotter.XYs, n)
	maxRate := 0.0
	for i, p := range s.Points {
		x := p.OfferedPerSecond
		offered[i] = plotter.XY{X: x, Y: x}
		achieved[i] = plotter.XY{X: x, Y: p.AchievedPerSecond}
		shedRate[i] = plotter.XY{X: x, Y: float64(p.Shed503) / s.DurationSeconds}
		p50[i] = plotter.XY{X: x, Y: p.Latency.P50 * 1000}
		p99[i] = plotter.XY{X: x, Y: p.Latency.P99 * 1000}
		maxRate = max(maxRate, x)
	}

	blue := color.RGBA{R: 31, G: 119, B: 180, A: 255}
	orange := color.RGBA{R: 255, G: 127, B: 14, A: 255}
	red := color.RGBA{R: 214, G: 39, B: 40, A: 255}
	grey := color.RGBA{R: 150, G: 150, B: 150, A: 255}

	top := plot.New()
	top.Title.Text = fmt.Sprintf("Receiver under open-loop load (100%% = %.0f events/s, %gs per step)", s.ReferencePerSecond, s.DurationSeconds)
	top.Y.Label.Text = "events/s"
	top.Y.Min = 0
	top.Legend.Top, top.Legend.Left = true, true
	top.Add(plotter.NewGrid())
	if err := addLine(top, offered, grey, true, "offered"); err != nil {
		return nil, err
	}
	if err := addLine(top, achieved, blue, false, "acknowledged"); err != nil {
		return nil, err
	}
	if err := addLine(top, shedRate, red, false, "shed (503)"); err != nil {
		return nil, err
	}

	bottom := plot.New()
	bottom.X.Label.Text = "offered events/s"
	bottom.Y.Label.Text = "answer time, ms"
	bottom.Y.Min = 0
	bottom.Legend.Top, bottom.Legend.Left = true, true
	bottom.Add(plotter.NewGrid())
	if err := addLine(bottom, p50, blue, false, "p50"); err != nil {
		return nil, err
	}
	if err := addLine(bottom, p99, orange, false, "p99"); err != nil {
		return nil, err
	}
	for _, p := range []*plot.Plot{top, bottom} {
		p.X.Min, p.X.Max = 0, maxRate*1.05
		p.X.Tick.Marker = wholeTicks{}
		p.Y.Tick.Marker = wholeTicks{}
	}

	const width, height = 8 * vg.Inch, 7 * vg.Inch
	img := vgimg.New(width, height)
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: 2, Cols: 1, PadTop: vg.Points(6), PadBottom: vg.Points(6), PadLeft: vg.Points(6), PadRight: vg.Points(12), PadY: vg.Points(10)}
	canvases := plot.Align([][]*plot.Plot{{top}, {bottom}}, tiles, dc)
	top.Draw(canvases[0][0])
	bottom.Draw(canvases[1][0])

	var buf bytes.Buffer
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(&buf); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func addLine(p *plot.Plot, xys plotter.XYs, c color.Color, dashed bool, name string) error {
	line, points, err := plotter.NewLinePoints(xys)
	if err != nil {
		return err
	}
	line.Color = c
	line.Width = vg.Points(1.5)
	if dashed {
		line.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
	}
	points.Color = c
	points.Shape = draw.CircleGlyph{}
	p.Add(line, points)
	p.Legend.Add(name, line, points)
	return nil
}

// wholeTicks are gonum's default ticks labelled without decimals: rates and
// milliseconds are read as whole numbers.
type wholeTicks struct{}

func (wholeTicks) Ticks(lo, hi float64) []plot.Tick {
	ticks := plot.DefaultTicks{}.Ticks(lo, hi)
	for i := range ticks {
		if ticks[i].Label != "" {
			ticks[i].Label = strconv.FormatFloat(ticks[i].Value, 'f', 0, 64)
		}
	}
	return ticks
}
