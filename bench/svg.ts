/**
 * A bar chart of a report as SVG text, with no browser and no dependency: one row per
 * throughput scenario (MB/s results of blobcore and of the peers), one bar per backend
 * or peer, the median value printed at the end of each bar, min–max as a thin whisker,
 * and the sha256 limit (node:crypto, one core) drawn as a dashed vertical line. Sizes
 * under 1 MiB are left to the table (ops/s); bars beyond 2.5× the limit are cut and
 * marked `»` with their value.
 */
import { type BenchReport, machineLine, type ResultEntry } from './report.js';
import { sizeLabel } from './scenarios/types.js';

const PALETTE = [
  '#4e79a7',
  '#f28e2b',
  '#59a14f',
  '#e15759',
  '#76b7b2',
  '#edc948',
  '#b07aa1',
  '#ff9da7',
  '#9c755f',
  '#bab0ac',
  '#1b9e77',
  '#d95f02',
  '#7570b3',
  '#e7298a',
  '#66a61e',
  '#386cb0',
];

function escapeXml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(' ')) {
    if (line && line.length + word.length + 1 > width) {
      lines.push(line);
      line = word;
    } else line = line ? `${line} ${word}` : word;
  }
  if (line) lines.push(line);
  return lines;
}

/** Round axis step: 1, 2 or 5 × 10^n giving about `ticks` ticks. */
function niceStep(max: number, ticks: number): number {
  const raw = max / ticks;
  const power = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 5, 10]) if (raw <= m * power) return m * power;
  return 10 * power;
}

interface Row {
  category: string;
  series: string;
  result: ResultEntry;
}

/** Row of the chart: scenario, size and what is compared (blobcore and its peers share a row). */
function category(result: ResultEntry): string {
  const size = result.size === undefined ? '' : ` ${sizeLabel(result.size)}`;
  if (result.scenario === 'put') return `put${size}`;
  if (result.scenario === 'get') return `get${size}${result.variant === 'unverified' ? ', unverified' : ''}`;
  return `${result.scenario}${size}: ${result.variant ?? result.label}`;
}

export function renderSvg(report: BenchReport): string {
  const rows: Row[] = [];
  for (const result of report.results) {
    if (result.unit !== 'MB/s' || !result.mbps) continue;
    if (result.system !== 'blobcore' && result.system !== 'peer') continue;
    if (!['put', 'get', 'upload'].includes(result.scenario)) continue;
    // Small blobs are about operations, not bandwidth: they are in the table as ops/s.
    if ((result.size ?? 0) < 1024 * 1024) continue;
    rows.push({ category: category(result), series: result.series ?? result.backend, result });
  }
  const categories = [...new Set(rows.map((r) => r.category))];
  const series = [...new Set(rows.map((r) => r.series))];
  const color = new Map(series.map((s, i) => [s, PALETTE[i % PALETTE.length] as string]));
  const limits = report.results.filter((r) => r.system === 'limit' && r.mbps);
  const biggest = Math.max(0, ...limits.map((r) => r.size ?? 0));
  const limitValues = limits
    .filter((r) => (r.size ?? 0) === biggest)
    .map((r) => r.mbps?.median ?? 0)
    .sort((a, b) => a - b);
  const limit = limitValues.length ? (limitValues[limitValues.length >> 1] as number) : 0;

  const width = 1000;
  const left = 260;
  const right = 90;
  const top = 84;
  const bar = 11;
  const gap = 2;
  const groupGap = 12;
  const plotWidth = width - left - right;
  // Bars past 2.5× the hash limit (in-memory reads that only pass buffers along) are cut
  // at the edge and marked, so they do not flatten everything else.
  const maxValue = Math.max(limit, ...rows.map((r) => r.result.mbps?.max ?? 0), 1);
  const shown = limit > 0 ? Math.min(maxValue, limit * 2.5) : maxValue;
  const step = niceStep(shown, 6);
  const axisMax = Math.ceil(shown / step) * step;
  const x = (value: number) => left + (Math.min(value, axisMax) / axisMax) * plotWidth;

  const out: string[] = [];
  let y = top;
  for (const cat of categories) {
    const members = rows.filter((r) => r.category === cat);
    const height = members.length * (bar + gap) - gap;
    out.push(
      `<text x="${left - 8}" y="${y + height / 2 + 4}" text-anchor="end" class="cat">${escapeXml(cat)}</text>`,
    );
    for (const row of members) {
      const m = row.result.mbps as NonNullable<ResultEntry['mbps']>;
      const w = Math.max(1, x(m.median) - left);
      const fill = color.get(row.series) ?? '#888';
      const cut = m.median > axisMax;
      out.push(
        `<rect x="${left}" y="${y}" width="${w.toFixed(1)}" height="${bar}" fill="${fill}"><title>${escapeXml(
          `${row.series}: ${row.result.label} — ${m.median.toFixed(0)} MB/s (${m.min.toFixed(0)}–${m.max.toFixed(0)})`,
        )}</title></rect>`,
        `<line x1="${x(m.min).toFixed(1)}" x2="${x(m.max).toFixed(1)}" y1="${y + bar / 2}" y2="${y + bar / 2}" stroke="#333" stroke-width="1"/>`,
        `<text x="${(x(m.max) + 4).toFixed(1)}" y="${y + bar - 2}" class="val">${cut ? '» ' : ''}${m.median >= 10 ? m.median.toFixed(0) : m.median.toFixed(1)}</text>`,
      );
      y += bar + gap;
    }
    y += groupGap;
  }
  const bottom = y;
  const height = bottom + 60;
  const axis: string[] = [];
  for (let v = 0; v <= axisMax + 1e-9; v += step) {
    axis.push(
      `<line x1="${x(v).toFixed(1)}" x2="${x(v).toFixed(1)}" y1="${top - 6}" y2="${bottom}" stroke="#e5e5e5"/>`,
      `<text x="${x(v).toFixed(1)}" y="${bottom + 16}" text-anchor="middle" class="tick">${v.toLocaleString('en-US')}</text>`,
    );
  }
  const limitLine =
    limit > 0
      ? [
          `<line x1="${x(limit).toFixed(1)}" x2="${x(limit).toFixed(1)}" y1="${top - 10}" y2="${bottom}" stroke="#c00" stroke-width="1.5" stroke-dasharray="6 4"/>`,
          `<text x="${(x(limit) - 4).toFixed(1)}" y="${top - 14}" text-anchor="end" class="limit">sha256 limit ${limit.toFixed(0)} MB/s (node:crypto, 1 core${biggest ? `, ${sizeLabel(biggest)}` : ''})</text>`,
        ]
      : [];
  const legend = series.map((s, i) => {
    const lx = 12 + (i % 4) * 240;
    const ly = bottom + 50 + Math.floor(i / 4) * 16;
    return `<rect x="${lx}" y="${ly - 9}" width="10" height="10" fill="${color.get(s)}"/><text x="${lx + 14}" y="${ly}" class="leg">${escapeXml(s)}</text>`;
  });
  const legendRows = Math.ceil(series.length / 4);
  const totalHeight = height + legendRows * 16;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${totalHeight}" viewBox="0 0 ${width} ${totalHeight}" font-family="Helvetica, Arial, sans-serif">`,
    `<title>blobcore bench: throughput in MB/s per scenario and backend, ${escapeXml(report.started.slice(0, 10))}</title>`,
    '<style>.cat{font-size:11px;fill:#222}.val{font-size:9px;fill:#444}.tick{font-size:10px;fill:#666}.limit{font-size:11px;fill:#c00}.leg{font-size:11px;fill:#222}.title{font-size:14px;font-weight:bold}.sub{font-size:10px;fill:#555}</style>',
    `<rect width="100%" height="100%" fill="#fff"/>`,
    `<text x="12" y="20" class="title">blobcore bench — throughput, MB/s (median; whisker: min–max), ${escapeXml(report.started.slice(0, 10))}</text>`,
    ...wrap(machineLine(report.machine), 150).map(
      (line, i) => `<text x="12" y="${36 + i * 13}" class="sub">${escapeXml(line)}</text>`,
    ),
    ...axis,
    ...out,
    ...limitLine,
    `<text x="${left + plotWidth / 2}" y="${bottom + 16 + 14}" text-anchor="middle" class="tick">MB/s</text>`,
    ...legend,
    '</svg>',
    '',
  ].join('\n');
}
