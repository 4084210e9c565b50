package bench

import (
	"fmt"
	"math"
	"strings"
)

// svg draws throughput (log scale) against sessions (log2 scale): jumpless
// at realistic pacing, the bound of a sender of 1 KiB per 1 ms per session
// (what AWS's agent and plugin do), jumpless unpaced, and the
// protocol-free limits (raw TCP, SSH direct-tcpip) as horizontal lines.
func (rep *report) svg() []byte {
	const W, H, left, right, top, bottom = 720, 420, 70, 230, 30, 50
	pw, ph := float64(W-left-right), float64(H-top-bottom)
	ymin, ymax := 0.25, 1024.0
	x := func(sessions float64) float64 { return left + pw*math.Log2(sessions)/4 }
	y := func(v float64) float64 {
		v = min(max(v, ymin), ymax)
		return top + ph*(1-math.Log2(v/ymin)/math.Log2(ymax/ymin))
	}
	var s strings.Builder
	fmt.Fprintf(&s, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", W, H, W, H)
	fmt.Fprintf(&s, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&s, `<text x="%d" y="18" font-size="14">Download throughput vs sessions (MiB/s, log scale); one run of %s</text>`+"\n", left, "make bench-report")
	for v := ymin; v <= ymax; v *= 4 {
		fmt.Fprintf(&s, `<line x1="%d" x2="%.0f" y1="%.1f" y2="%.1f" stroke="#ddd"/><text x="%d" y="%.1f" text-anchor="end">%g</text>`+"\n", left, left+pw, y(v), y(v), left-6, y(v)+4, v)
	}
	for _, k := range []float64{1, 2, 4, 8, 16} {
		fmt.Fprintf(&s, `<line x1="%.1f" x2="%.1f" y1="%d" y2="%.0f" stroke="#eee"/><text x="%.1f" y="%.0f" text-anchor="middle">%g</text>`+"\n", x(k), x(k), top, top+ph, x(k), top+ph+16, k)
	}
	fmt.Fprintf(&s, `<text x="%.0f" y="%d" text-anchor="middle">sessions</text>`+"\n", left+pw/2, H-12)
	legend := 0
	addLegend := func(color, dash, label string) {
		ly := float64(top + 10 + 20*legend)
		legend++
		fmt.Fprintf(&s, `<line x1="%.0f" x2="%.0f" y1="%.0f" y2="%.0f" stroke="%s" stroke-width="2" stroke-dasharray="%s"/><text x="%.0f" y="%.0f">%s</text>`+"\n", left+pw+12, left+pw+36, ly, ly, color, dash, left+pw+42, ly+4, label)
	}
	hline := func(v float64, color, label string) {
		fmt.Fprintf(&s, `<line x1="%d" x2="%.0f" y1="%.1f" y2="%.1f" stroke="%s" stroke-width="2" stroke-dasharray="6 4"/>`+"\n", left, left+pw, y(v), y(v), color)
		addLegend(color, "6 4", fmt.Sprintf("%s %.0f", label, v))
	}
	for _, r := range rep.unpaced {
		switch r.name {
		case "raw TCP, down":
			hline(r.res.mibps, "#888", "raw TCP")
		case "SSH direct-tcpip over TCP, down":
			hline(r.res.mibps, "#555", "SSH direct-tcpip")
		}
	}
	poly := func(pts [][2]float64, color, dash, label string) {
		var p []string
		for _, pt := range pts {
			p = append(p, fmt.Sprintf("%.1f,%.1f", x(pt[0]), y(pt[1])))
			fmt.Fprintf(&s, `<circle cx="%.1f" cy="%.1f" r="3" fill="%s"/>`+"\n", x(pt[0]), y(pt[1]), color)
		}
		fmt.Fprintf(&s, `<polyline points="%s" fill="none" stroke="%s" stroke-width="2" stroke-dasharray="%s"/>`+"\n", strings.Join(p, " "), color, dash)
		addLegend(color, dash, label)
	}
	var unp [][2]float64
	for _, r := range rep.unpaced {
		switch r.name {
		case "jumpless unpaced, 1 session, down":
			unp = append(unp, [2]float64{1, r.res.mibps})
		case "jumpless unpaced, 4 sessions, down":
			unp = append(unp, [2]float64{4, r.res.mibps})
		}
	}
	if len(unp) > 0 {
		poly(unp, "#2a7", "", "jumpless, unpaced agent")
	}
	var real, bound [][2]float64
	for _, r := range rep.realistic {
		real = append(real, [2]float64{float64(r.sessions), r.res.mibps})
		bound = append(bound, [2]float64{float64(r.sessions), float64(r.sessions) * 1024 / 1e-3 / (1 << 20)})
	}
	poly(bound, "#c63", "4 3", "1 KiB per 1 ms sender")
	poly(real, "#36c", "", "jumpless, realistic agent")
	if len(rep.db) >= 2 && rep.db[1].seconds > 0 {
		// MySQL result rows in uncompressed bytes per second, one session.
		for i, color := range []string{"#a3a", "#e7e"} {
			v := rep.db[0].wireMiB / rep.db[i].seconds
			fmt.Fprintf(&s, `<rect x="%.1f" y="%.1f" width="8" height="8" fill="%s"/>`+"\n", x(1)+10, y(v)-4, color)
			ly := float64(top + 10 + 20*legend)
			legend++
			label := "MySQL rows, uncompressed"
			if i == 1 {
				label = "MySQL rows, compressed"
			}
			fmt.Fprintf(&s, `<rect x="%.0f" y="%.0f" width="8" height="8" fill="%s"/><text x="%.0f" y="%.0f">%s</text>`+"\n", left+pw+20, ly-4, color, left+pw+42, ly+4, label)
		}
	}
	s.WriteString("</svg>\n")
	return []byte(s.String())
}
