package main

import (
	"fmt"
	"image/color"
	"math"
	"os"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/text"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"

	"github.com/funnel-operator/funnel-operator/hack/tools/prometheus/grafana"
)

// The picture follows Grafana's grid (24 columns) and dark theme.
const (
	colWidth   = vg.Length(80)
	unitHeight = vg.Length(30)
	gap        = vg.Length(6)
	headHeight = vg.Length(60)
	legendLine = vg.Length(14)
	legendSize = 9.0
)

var (
	background = rgb(0x11, 0x12, 0x17)
	panelColor = rgb(0x18, 0x1b, 0x1f)
	textColor  = rgb(0xcc, 0xcc, 0xdc)
	dimText    = rgb(0x8e, 0x8e, 0x9e)
	gridColor  = rgb(0x2c, 0x32, 0x35)
	// Grafana's classic palette.
	palette = []color.Color{rgb(0x73, 0xbf, 0x69), rgb(0xf2, 0xcc, 0x0c), rgb(0x56, 0xa6, 0x4b), rgb(0x8a, 0xb8, 0xff),
		rgb(0xff, 0x78, 0x0a), rgb(0xf2, 0x49, 0x5c), rgb(0x57, 0x94, 0xf2), rgb(0xb8, 0x77, 0xd9), rgb(0x70, 0x5d, 0xa0),
		rgb(0x37, 0x87, 0x2d), rgb(0xfa, 0xde, 0x2a), rgb(0x6e, 0xd0, 0xe0), rgb(0xe0, 0x75, 0x2d), rgb(0xbf, 0x1b, 0x00)}
	named = map[string]color.Color{"green": rgb(0x73, 0xbf, 0x69), "orange": rgb(0xff, 0x98, 0x30), "red": rgb(0xf2, 0x49, 0x5c)}
)

func rgb(r, g, b uint8) color.Color { return color.RGBA{r, g, b, 255} }

func style(size float64, c color.Color) text.Style {
	return text.Style{Color: c, Font: font.Font{Typeface: "Liberation", Variant: "Sans", Size: vg.Points(size)}, Handler: plot.DefaultTextHandler}
}

// drawDashboard lays the panels out on the dashboard's grid and writes a PNG.
func drawDashboard(d *grafana.Dashboard, data map[int]panelData, caption string, start, end time.Time, out string) error {
	panels := d.AllPanels()
	rows := 0
	for _, p := range panels {
		rows = max(rows, p.GridPos.Y+p.GridPos.H)
	}
	width, height := 24*colWidth+gap, headHeight+vg.Length(rows)*unitHeight+gap
	img := vgimg.NewWith(vgimg.UseWH(width, height), vgimg.UseDPI(96))
	dc := draw.New(img)
	fillRect(dc, vg.Rectangle{Max: vg.Point{X: width, Y: height}}, background)
	dc.FillText(style(18, textColor), vg.Point{X: gap * 2, Y: height - 26}, d.Title)
	dc.FillText(style(11, dimText), vg.Point{X: gap * 2, Y: height - 46}, caption)

	for i, p := range panels {
		// The grid's y grows downwards, the canvas' upwards.
		r := vg.Rectangle{
			Min: vg.Point{X: vg.Length(p.GridPos.X)*colWidth + gap, Y: height - headHeight - vg.Length(p.GridPos.Y+p.GridPos.H)*unitHeight},
			Max: vg.Point{X: vg.Length(p.GridPos.X+p.GridPos.W) * colWidth, Y: height - headHeight - vg.Length(p.GridPos.Y)*unitHeight - gap},
		}
		c := draw.Canvas{Canvas: dc, Rectangle: r}
		switch p.Type {
		case "row":
			c.FillText(style(14, textColor), vg.Point{X: r.Min.X, Y: r.Min.Y + 6}, p.Title)
		case "stat":
			drawStat(c, p, data[i])
		default:
			if err := drawTimeseries(c, p, data[i], start, end); err != nil {
				return fmt.Errorf("panel %q: %w", p.Title, err)
			}
		}
	}
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func fillRect(c vg.Canvas, r vg.Rectangle, col color.Color) {
	var p vg.Path
	p.Move(r.Min)
	p.Line(vg.Point{X: r.Max.X, Y: r.Min.Y})
	p.Line(r.Max)
	p.Line(vg.Point{X: r.Min.X, Y: r.Max.Y})
	p.Close()
	c.SetColor(col)
	c.Fill(p)
}

// drawStat is a big number on the colour of the threshold it reached.
func drawStat(c draw.Canvas, p grafana.Panel, pd panelData) {
	bg := panelColor
	if pd.ok {
		for _, t := range p.FieldConfig.Defaults.Thresholds.Steps {
			if t.Value == nil || pd.value >= *t.Value {
				if col, ok := named[t.Color]; ok {
					bg = col
				}
			}
		}
	}
	fillRect(c, c.Rectangle, bg)
	c.FillText(style(12, rgb(0xff, 0xff, 0xff)), vg.Point{X: c.Min.X + 8, Y: c.Max.Y - 18}, p.Title)
	value := "no data"
	if pd.ok {
		value = format(p.FieldConfig.Defaults.Unit, pd.value)
	}
	big := style(32, rgb(0xff, 0xff, 0xff))
	big.XAlign, big.YAlign = draw.XCenter, draw.YCenter
	c.FillText(big, vg.Point{X: (c.Min.X + c.Max.X) / 2, Y: (c.Min.Y+c.Max.Y)/2 - 6}, value)
}

// drawTimeseries is a line per series, with the panel's unit on the y axis and a legend.
func drawTimeseries(c draw.Canvas, p grafana.Panel, pd panelData, start, end time.Time) error {
	fillRect(c, c.Rectangle, panelColor)
	c.FillText(style(12, textColor), vg.Point{X: c.Min.X + 8, Y: c.Max.Y - 18}, p.Title)

	// The legend takes the bottom lines: as many entries as fit in three lines.
	legendLines, entries := legendLayout(c, pd.series)
	plotArea := draw.Crop(c, 0, -6, vg.Length(legendLines)*legendLine+4, -26)

	pl := plot.New()
	pl.BackgroundColor = color.Transparent
	for _, ax := range []*plot.Axis{&pl.X, &pl.Y} {
		ax.Color, ax.Tick.Color = gridColor, gridColor
		ax.Tick.Label = style(9.5, dimText)
		ax.Padding = 2
	}
	pl.X.Min, pl.X.Max = float64(start.Unix()), float64(end.Unix())
	pl.X.Tick.Marker = plot.TimeTicks{Format: "15:04", Time: func(t float64) time.Time { return time.Unix(int64(t), 0).UTC() }}
	pl.Y.Tick.Marker = unitTicks(p.FieldConfig.Defaults.Unit)
	pl.Y.Min = 0
	if m := p.FieldConfig.Defaults.Max; m != nil {
		pl.Y.Max = *m
	}
	grid := plotter.NewGrid()
	grid.Vertical.Color, grid.Horizontal.Color = gridColor, gridColor
	pl.Add(grid)
	for i, s := range pd.series {
		var xys plotter.XYs
		for j, t := range s.times {
			if !math.IsNaN(s.values[j]) && !math.IsInf(s.values[j], 0) {
				xys = append(xys, plotter.XY{X: float64(t.Unix()), Y: s.values[j]})
				pl.Y.Max = max(pl.Y.Max, s.values[j])
			}
		}
		if len(xys) == 0 {
			continue
		}
		l, err := plotter.NewLine(xys)
		if err != nil {
			return err
		}
		l.LineStyle.Color = palette[i%len(palette)]
		l.LineStyle.Width = vg.Points(1.2)
		pl.Add(l)
	}
	if pl.Y.Max == 0 {
		pl.Y.Max = 1
	}
	if len(pd.series) == 0 {
		nd := style(10, dimText)
		nd.XAlign = draw.XCenter
		c.FillText(nd, vg.Point{X: (c.Min.X + c.Max.X) / 2, Y: (c.Min.Y + c.Max.Y) / 2}, "no data")
	}
	pl.Draw(plotArea)

	// Legend entries: a short coloured line and the name, left to right, line by line.
	x, y := c.Min.X+8, c.Min.Y+vg.Length(legendLines)*legendLine-10
	for i, e := range entries {
		if e.newLine {
			x, y = c.Min.X+8, y-legendLine
		}
		c.StrokeLine2(draw.LineStyle{Color: palette[i%len(palette)], Width: vg.Points(2)}, x, y+3, x+10, y+3)
		c.FillText(style(legendSize, dimText), vg.Point{X: x + 13, Y: y}, e.text)
		x += e.width
	}
	return nil
}

type legendEntry struct {
	text    string
	width   vg.Length
	newLine bool
}

// legendLayout fits the series names into at most three lines; the rest become "+N more".
func legendLayout(c draw.Canvas, ss []series) (int, []legendEntry) {
	if len(ss) == 0 {
		return 0, nil
	}
	st := style(legendSize, dimText)
	avail := c.Max.X - c.Min.X - 16
	lines, x := 1, vg.Length(0)
	var out []legendEntry
	for i, s := range ss {
		name := s.legend
		if len(name) > 48 {
			name = name[:47] + "…"
		}
		w := 13 + st.Width(name) + 12
		newLine := x > 0 && x+w > avail
		if newLine {
			if lines == 3 {
				out = append(out, legendEntry{text: fmt.Sprintf("+%d more", len(ss)-i), width: w})
				break
			}
			lines++
			x = 0
		}
		out = append(out, legendEntry{text: name, width: w, newLine: newLine})
		x += w
	}
	return lines, out
}

// unitTicks labels the default ticks in the panel's unit.
type unitTicks string

func (u unitTicks) Ticks(lo, hi float64) []plot.Tick {
	ticks := plot.DefaultTicks{}.Ticks(lo, hi)
	for i := range ticks {
		if ticks[i].Label != "" {
			ticks[i].Label = format(string(u), ticks[i].Value)
		}
	}
	return ticks
}

// format writes a value in a Grafana unit.
func format(unit string, v float64) string {
	switch unit {
	case "s":
		d := time.Duration(v * float64(time.Second))
		switch {
		case v == 0:
			return "0"
		case d < time.Millisecond:
			return fmt.Sprintf("%.0fµs", v*1e6)
		case d < time.Second:
			return fmt.Sprintf("%.0fms", v*1e3)
		case d < time.Minute:
			return trim(fmt.Sprintf("%.1fs", v))
		case d < time.Hour:
			return trim(fmt.Sprintf("%.1fmin", v/60))
		default:
			return trim(fmt.Sprintf("%.1fh", v/3600))
		}
	case "reqps":
		return short(v) + " req/s"
	case "ops":
		return short(v) + "/s"
	case "percentunit":
		return trim(fmt.Sprintf("%.1f", v*100)) + "%"
	default:
		return short(v)
	}
}

func short(v float64) string {
	switch {
	case math.Abs(v) >= 1e6:
		return trim(fmt.Sprintf("%.1f", v/1e6)) + "M"
	case math.Abs(v) >= 1e3:
		return trim(fmt.Sprintf("%.1f", v/1e3)) + "k"
	case v == math.Trunc(v):
		return fmt.Sprintf("%.0f", v)
	default:
		return trim(fmt.Sprintf("%.2f", v))
	}
}

// trim drops a fraction of zeros: "2.0s" → "2s".
func trim(s string) string {
	i := strings.IndexByte(s, '.')
	if i < 0 {
		return s
	}
	j := i + 1
	for j < len(s) && s[j] == '0' {
		j++
	}
	if j < len(s) && s[j] >= '0' && s[j] <= '9' {
		return s
	}
	return s[:i] + s[j:]
}
