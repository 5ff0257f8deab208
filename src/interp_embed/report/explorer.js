"use strict";
// The report's pages, drawn from the JSON block. Text from the data only ever becomes a text node or an
// attribute value (never markup), so a document or a label cannot inject anything into the page.
(function () {
  const data = JSON.parse(document.getElementById("report-data").textContent);
  const features = new Map(data.features.map((f) => [f.id, f]));
  const view = document.getElementById("view");
  const SVG = "http://www.w3.org/2000/svg";

  function el(tag, attributes, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attributes || {})) {
      if (value !== null && value !== undefined) node.setAttribute(key, String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function svg(tag, attributes, title) {
    const node = document.createElementNS(SVG, tag);
    for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, String(value));
    if (title) {
      const t = document.createElementNS(SVG, "title");
      t.textContent = title;
      node.append(t);
    }
    return node;
  }

  const integer = (x) => x.toLocaleString("en-US");
  const percent = (x) => (x === null ? "—" : (100 * x).toFixed(x > 0 && x < 0.001 ? 3 : 1) + "%");
  const decimal = (x, digits = 3) => (x === null || x === undefined ? "—" : Number(x).toPrecision(digits));
  const pvalue = (x) => (x === null ? "—" : x < 0.001 ? x.toExponential(2) : x.toFixed(3));
  const featureLink = (id) => el("a", { href: "#feature/" + id, class: "feature-link" }, "#" + id);

  // ---- shaded excerpts -------------------------------------------------------------------------------
  function excerpt(example, feature, scale) {
    const text = data.texts[example.text];
    const p = el("p", { class: "excerpt" });
    if (example.cut_before) p.append(el("span", { class: "cut" }, "…"));
    let at = 0;
    for (const [start, end, value] of example.marks) {
      if (start > at) p.append(text.slice(at, start));
      const strength = Math.min(1, value / (scale || 1));
      const span = el("span", {
        class: "act",
        "data-activation": value,
        title: `feature ${feature}: ${decimal(value, 4)} at characters ${example.offset + start}–${example.offset + end}`,
      }, text.slice(start, end));
      span.style.backgroundColor = `rgba(var(--shade), ${(0.12 + 0.78 * strength).toFixed(3)})`;
      p.append(span);
      at = end;
    }
    p.append(text.slice(at));
    if (example.cut_after) p.append(el("span", { class: "cut" }, "…"));
    return p;
  }

  // A document is named by its title (a column the report was asked for, else its first words) and a few other
  // columns, never by a bare number; the row is given so it can be found in the table.
  function documentMeta(example, where) {
    const name = data.names[example.name];
    const title = name.title_from === "column" ? el("span", { class: "doc-title" }, name.title)
      : el("span", { class: "doc-title from-text" }, `“${name.title}”`);
    const facts = [`row ${integer(example.document)}${where ? " of " + where : ""}`,
      ...name.meta.map(([column, value]) => `${column}: ${value}`),
      `max activation ${decimal(example.peak, 4)}`];
    return el("div", { class: "meta" }, title, " · ", facts.join(" · "));
  }

  function examples(list, feature, scale, where) {
    if (!list.length) return el("p", { class: "note" }, "No document to show.");
    return el("div", { class: "examples" }, list.map((example) => el("div", { class: "example" },
      documentMeta(example, where), excerpt(example, feature, scale))));
  }

  // ---- charts ---------------------------------------------------------------------------------------
  function histogram(feature) {
    const width = 360, height = 110, bottom = 16, counts = feature.histogram;
    const top = Math.max(1, ...counts), barWidth = width / counts.length;
    const chart = svg("svg", { width, height, class: "histogram", role: "img",
      "aria-label": `histogram of feature ${feature.id}'s max activation per document` });
    counts.forEach((count, i) => {
      const h = (height - bottom) * count / top;
      const lo = feature.max * i / counts.length, hi = feature.max * (i + 1) / counts.length;
      chart.append(svg("rect", { class: "bar", x: i * barWidth + 1, y: height - bottom - h, width: barWidth - 2, height: h },
        `${integer(count)} documents with max activation ${decimal(lo)}–${decimal(hi)}`));
    });
    chart.append(svg("line", { class: "axis", x1: 0, x2: width, y1: height - bottom, y2: height - bottom }));
    const label = (x, anchor, text) => { const t = svg("text", { x, y: height - 3, "text-anchor": anchor }); t.textContent = text; return t; };
    chart.append(label(0, "start", "0"), label(width, "end", decimal(feature.max)));
    return chart;
  }

  function differenceBar(finding) {
    const width = 220, height = 22, middle = width / 2, scale = (x) => middle + x * middle;
    const chart = svg("svg", { width, height, class: "difference", role: "img",
      "aria-label": `difference ${decimal(finding.difference)}, interval ${decimal(finding.ci_low)} to ${decimal(finding.ci_high)}` });
    const x0 = scale(Math.min(0, finding.difference)), x1 = scale(Math.max(0, finding.difference));
    chart.append(svg("rect", { class: finding.difference >= 0 ? "diff-a" : "diff-b", x: x0, y: 6, width: Math.max(1, x1 - x0), height: 10 },
      `difference of frequencies ${percent(finding.difference)}`));
    chart.append(svg("line", { class: "axis", x1: middle, x2: middle, y1: 0, y2: height }));
    if (finding.ci_low !== null && finding.ci_high !== null) {
      const lo = scale(finding.ci_low), hi = scale(finding.ci_high);
      const title = `95% interval ${percent(finding.ci_low)} to ${percent(finding.ci_high)}`;
      chart.append(svg("line", { class: "ci", x1: lo, x2: hi, y1: 11, y2: 11 }, title),
        svg("line", { class: "ci", x1: lo, x2: lo, y1: 6, y2: 16 }, title),
        svg("line", { class: "ci", x1: hi, x2: hi, y1: 6, y2: 16 }, title));
    }
    return chart;
  }

  // ---- sortable, searchable tables --------------------------------------------------------------------
  // columns: [{key, title, numeric, cell(row) -> node or text, value(row) -> sort key}]; detail(row), when given,
  // draws a full-width row under each row.
  function sortableTable(id, columns, rows, searchText, detail) {
    const body = el("tbody");
    const table = el("table", { id }, el("thead", {}, el("tr", {}, columns.map((c) =>
      el("th", { class: "sortable" + (c.numeric ? " num" : ""), "data-key": c.key, title: "sort by " + c.title }, c.title)))), body);
    let order = rows.slice(), query = "";
    function draw() {
      body.replaceChildren(...order.filter((row) => !query || searchText(row).includes(query)).flatMap((row) => [
        el("tr", { "data-id": row.id }, columns.map((c) => el("td", { class: (c.numeric ? "num " : "") + (c.className || "") }, c.cell(row)))),
        detail ? el("tr", { class: "detail" }, el("td", { colspan: columns.length }, detail(row))) : null,
      ].filter(Boolean)));
    }
    table.querySelectorAll("th").forEach((th, i) => th.addEventListener("click", () => {
      const column = columns[i], direction = th.dataset.sort === "desc" ? "asc" : "desc";
      table.querySelectorAll("th").forEach((other) => other.removeAttribute("data-sort"));
      th.dataset.sort = direction;
      const sign = direction === "asc" ? 1 : -1, key = column.value || ((row) => row[column.key]);
      order = rows.slice().sort((a, b) => {
        const x = key(a), y = key(b);
        if (x === y) return 0;
        if (x === null || x === undefined) return 1;
        if (y === null || y === undefined) return -1;
        return (x < y ? -1 : 1) * sign;
      });
      draw();
    }));
    table.filter = (text) => { query = text.trim().toLowerCase(); draw(); };
    draw();
    return table;
  }

  const sourceBadge = (f) => f.source ? el("span", { class: "badge " + f.source, title: f.model ? "model: " + f.model : null }, f.source) : "—";
  const llmScore = (f) => f.balanced_accuracy ?? f.fuzzing ?? null;
  const keywordScore = (f) => (f.keyword ? f.keyword.balanced_accuracy : null);
  const firesOn = (f) => el("span", { class: "fires-on" }, f.fires_on.length ? f.fires_on.join(" · ") : "—");
  const lift = (f) => (f.specificity ? f.specificity.lift : null);
  const times = (x) => (x === null ? "—" : x >= 10 ? `${Math.round(x)}×` : `${x.toFixed(1)}×`);
  const liftCell = (f) => f.specificity ? el("span", {
    title: `active on ${percent(f.specificity.here)} of this dataset's tokens, ${percent(f.specificity.corpus)} of the SAE's labelling corpus'`,
  }, times(f.specificity.lift)) : "—";

  function keywordText(k) {
    if (!k || k.balanced_accuracy === null) return null;
    const found = k.true_positives === null ? "" : `; finds ${integer(k.true_positives)} of ${integer(k.true_positives + k.false_negatives)} documents where the feature is strongly active, ${integer(k.false_positives)} false alarms in ${integer(k.false_positives + k.true_negatives)} others`;
    return `keyword score ${decimal(k.balanced_accuracy)} (${k.scored_on === "held out" ? "on documents held out from writing the label" : "on this dataset's documents"}${found})`;
  }

  function notEmbedded(id) {
    const s = data.shown;
    return [el("p", {}, el("a", { href: "#features" }, "← all features")),
      el("h2", { id: "feature-heading" }, `Feature ${id}`),
      el("p", { id: "not-embedded" }, `Feature ${id} is not in this report, which embeds ${integer(s.features + s.linked)} of ${integer(s.of)} features. To include it, write the report again with it among the features:`),
      el("pre", { class: "command" }, `interp-embed report ${s.store} --features ${id} -o report.html`),
      el("p", { class: "note" }, "or in Python: ", el("code", {}, `ds.report("report.html", features=[${id}])`),
        " (add the other features you want beside it; with --vs / vs= the diff view stays).")];
  }

  // ---- pages ----------------------------------------------------------------------------------------
  function overviewPage() {
    const o = data.overview, s = data.shown;
    const facts = el("dl", { class: "facts" });
    const fact = (term, value) => facts.append(el("dt", {}, term), el("dd", {}, value));
    if (o.description) fact("description", o.description);
    fact("documents", `${integer(o.documents)} (${integer(o.encoded)} encoded)`);
    fact("tokens", integer(o.tokens));
    fact("reader", o.reader ? `${o.reader.model}, layer ${o.reader.layer} (${o.reader.role})` : "none recorded");
    fact("SAE", Object.entries(o.sae).map(([k, v]) => `${k} ${v}`).join(", ") + (o.sae_sha256 ? `; weights sha256 ${o.sae_sha256.slice(0, 12)}…` : ""));
    fact("store written", o.store_created);
    fact("report written", o.report_created);
    fact("shown", `${integer(s.features)} of ${integer(s.of)} features: ${s.rule}` +
      (s.linked ? `; and ${integer(s.linked)} more that the cluster table links to (${Math.min(3, s.top_documents)} top documents each)` : "") +
      `. Per feature ${s.top_documents} top documents and ${s.quantile_documents} across its range of activations (each an excerpt of ` +
      `${s.excerpt_tokens} tokens around its strongest), and its ${s.correlated} most co-occurring shown features. Nothing else of the dataset is in this file.`);
    fact("documents named by", s.title_column ? `the column ${s.title_column}, with the first other columns` : "their first words, with the first columns of the table (no title column)");
    const shown = data.features.filter((f) => !f.linked);
    const table = sortableTable("feature-table", [
      { key: "id", title: "feature", numeric: true, cell: (f) => featureLink(f.id) },
      { key: "fires_on", title: "fires on (here)", className: "words", value: (f) => f.fires_on.join(" "), cell: firesOn },
      { key: "label", title: "label", className: "label", cell: (f) => el("a", { href: "#feature/" + f.id }, f.label || "(no label)") },
      { key: "source", title: "label from", cell: sourceBadge },
      { key: "keyword", title: "keyword score", numeric: true, value: keywordScore, cell: (f) => el("span", { title: keywordText(f.keyword) }, decimal(keywordScore(f))) },
      { key: "llm", title: "LLM score", numeric: true, value: llmScore, cell: (f) => decimal(llmScore(f)) },
      { key: "frequency", title: "frequency", numeric: true, cell: (f) => percent(f.frequency) },
      { key: "lift", title: "× SAE corpus", numeric: true, value: lift, cell: liftCell },
      { key: "max", title: "max activation", numeric: true, cell: (f) => decimal(f.max) },
    ], shown, (f) => `#${f.id} ${f.fires_on.join(" ")} ${f.label} ${f.source || ""}`.toLowerCase());
    const search = el("input", { type: "search", id: "search", placeholder: "Search features by id, words or label…", "aria-label": "search features" });
    search.addEventListener("input", () => table.filter(search.value));
    const guide = el("dl", { class: "terms note", id: "how-to-read" });
    const explain = (term, text) => guide.append(el("dt", {}, term), el("dd", {}, text));
    explain("fires on (here)", `what the feature does in this data, read first: ${s.fires_on}.`);
    explain("label", "what it was called elsewhere, and where that came from: shipped (with the SAE, written from its own training text), dataset (from this dataset's words), llm (by a language model), user (set by hand).");
    explain("keyword score", s.keyword_score ? s.keyword_score + "." : "none.");
    explain("LLM score", "a language model's detection balanced accuracy (else its fuzzing score), when the label was scored so.");
    explain("frequency", "the share of encoded documents where the feature is active.");
    if (s.specificity) explain("× SAE corpus", s.specificity + ".");
    explain("order", "the rule under “shown” above; click a header to sort.");
    return [el("div", { class: "card" }, facts),
      el("h2", {}, "Features"),
      el("details", { class: "guide" }, el("summary", {}, "How to read a feature"), guide),
      search, table];
  }

  function featurePage(id) {
    const f = features.get(id);
    if (!f) return notEmbedded(id);
    const provenance = ["label from ", sourceBadge(f)];
    if (f.model) provenance.push(" ", f.model);
    const keyword = keywordText(f.keyword);
    if (keyword) provenance.push(" · ", el("span", { id: "keyword-score" }, keyword));
    if (f.balanced_accuracy !== null) provenance.push(` · LLM detection balanced accuracy ${decimal(f.balanced_accuracy)}`);
    if (f.fuzzing !== null) provenance.push(` · fuzzing ${decimal(f.fuzzing)}`);
    const correlated = f.correlated.length
      ? el("ul", { class: "links", id: "correlated" }, f.correlated.map((c) => {
        const other = features.get(c.id) || { fires_on: [], label: "" };
        return el("li", {}, featureLink(c.id), " ", el("span", { class: "fires-on" }, other.fires_on.slice(0, 4).join(" · ")),
          el("span", { class: "note" }, ` ${other.label} · NPMI ${decimal(c.npmi)}, together in ${integer(c.count_ab)} documents, q ${pvalue(c.q_value)}`));
      }))
      : el("p", { class: "note" }, "None among the features shown.");
    const where = f.fires_on_in ? ` in ${f.fires_on_in}` : " here";
    return [
      el("p", {}, el("a", { href: "#features" }, "← all features")),
      el("h2", { id: "feature-heading" }, `Feature ${f.id}`),
      f.linked ? el("p", { class: "note", id: "linked" }, `Not among the features of the table: shown because ${f.linked} links to it, with its ${f.top.length} strongest documents.`) : null,
      el("p", { class: "fires-on-line" }, el("span", { class: "term" }, `fires on${where}: `),
        f.fires_on.length ? el("span", { class: "fires-on", id: "fires-on" }, f.fires_on.join(" · ")) : el("span", { class: "note" }, data.shown.fires_on)),
      el("p", { class: "label" }, el("span", { class: "term" }, "label: "), f.label || "(no label)"),
      el("p", { class: "note", id: "provenance" }, provenance),
      f.specificity ? el("p", { class: "note" }, `Active on ${percent(f.specificity.here)} of this dataset's tokens, ${percent(f.specificity.corpus)} of the SAE's labelling corpus' (${times(f.specificity.lift)}).`) : null,
      el("div", { class: "columns" },
        el("div", { class: "card" }, el("h3", {}, "Max activation per document"), histogram(f),
          el("p", { class: "note" }, `Active in ${integer(f.count)} documents (${percent(f.frequency)}); largest activation ${decimal(f.max, 4)}.`)),
        el("div", { class: "card" }, el("h3", {}, "Co-occurring features"), correlated)),
      el("h3", {}, "Top documents"),
      examples(f.top, f.id, f.max),
      el("h3", {}, "Across the range of activations"),
      el("p", { class: "note" }, "Documents at evenly spaced ranks of the rest, from strong to barely active."),
      examples(f.quantile, f.id, f.max),
    ];
  }

  function diffPage() {
    const d = data.diff;
    const rows = sortableTable("diff-table", [
      { key: "id", title: "feature", numeric: true, cell: (r) => featureLink(r.id) },
      { key: "fires_on", title: "fires on (where more frequent)", className: "words", value: (r) => r.fires_on.join(" "),
        cell: (r) => el("span", { class: "fires-on", title: "in " + (r.side === "a" ? d.name_a : d.name_b) }, r.fires_on.length ? r.fires_on.join(" · ") : "—") },
      { key: "label", title: "label", className: "label", cell: (r) => r.label || "(no label)" },
      { key: "freq_a", title: d.name_a, numeric: true, cell: (r) => percent(r.freq_a) },
      { key: "freq_b", title: d.name_b, numeric: true, cell: (r) => percent(r.freq_b) },
      { key: "difference", title: "difference (95% interval)", className: "bar", cell: (r) => [differenceBar(r), " ", percent(r.difference)] },
      { key: "q_value", title: "q-value", numeric: true, cell: (r) => pvalue(r.q_value) },
      { key: "n_members", title: "group size", numeric: true, cell: (r) => el("span", { title: "members: " + r.members.join(", ") + (r.n_members > r.members.length ? ", …" : "") }, integer(r.n_members)) },
    ], d.findings, (r) => `#${r.id} ${r.fires_on.join(" ")} ${r.label}`.toLowerCase(), (r) => {
      const scale = Math.max(...r.examples_a.concat(r.examples_b).map((e) => e.peak), 0);
      return el("details", { class: "finding" },
        el("summary", {}, `examples of feature ${r.id}: ${r.examples_a.length} from ${d.name_a}, ${r.examples_b.length} from ${d.name_b}`),
        el("div", { class: "columns" },
          el("div", {}, el("h3", {}, d.name_a), examples(r.examples_a, r.id, scale, d.name_a)),
          el("div", {}, el("h3", {}, d.name_b), examples(r.examples_b, r.id, scale, d.name_b))));
    });
    return [
      el("h2", {}, `${d.name_a} vs ${d.name_b}`),
      el("p", { class: "note" }, `Share of documents where each feature is active: ${integer(d.n_a)} encoded documents of ${d.name_a}, ` +
        `${integer(d.n_b)} of ${d.name_b}. ${integer(d.tested)} features tested, ${integer(d.significant)} at q < ${d.alpha} ` +
        `in ${integer(d.groups)} groups of features active in mostly the same documents; shown: ${integer(d.findings.length)} findings. ` +
        "Bars: the difference of frequencies (blue: more in the first, orange: more in the second) on a scale of −100% to 100%, " +
        "with its 95% Newcombe interval; q-values are Benjamini–Hochberg over every tested feature. " +
        "Fires on: the words each feature fires on most specifically on the side where it is more frequent."),
      rows,
    ];
  }

  function clustersPage() {
    const c = data.clusters;
    const table = sortableTable("cluster-table", [
      { key: "cluster", title: "cluster", numeric: true, cell: (r) => r.cluster },
      { key: "size", title: "documents", numeric: true, cell: (r) => integer(r.size) },
      { key: "rank", title: "rank", numeric: true, cell: (r) => r.rank },
      { key: "id", title: "feature", numeric: true, cell: (r) => r.id < 0 ? "—" : features.has(r.id) ? featureLink(r.id) : "#" + r.id },
      { key: "fires_on", title: "fires on", className: "label", cell: (r) => r.fires_on || "" },
      { key: "label", title: "label", className: "label", cell: (r) => r.label },
      { key: "freq_in", title: "in cluster", numeric: true, cell: (r) => percent(r.freq_in) },
      { key: "freq_out", title: "elsewhere", numeric: true, cell: (r) => percent(r.freq_out) },
      { key: "lift", title: "lift", numeric: true, cell: (r) => r.lift === null ? (r.freq_out === 0 ? "∞" : "—") : decimal(r.lift) },
    ], c.rows, (r) => `${r.cluster} #${r.id} ${r.label}`.toLowerCase());
    return [
      el("h2", {}, "Clusters"),
      el("p", { class: "note" }, `${integer(c.documents)} documents clustered, ${integer(c.unassigned)} in no cluster (−1); ` +
        (c.axis_size === data.shown.of ? "axis: every feature. " :
          `axis of ${integer(c.axis_size)} features (${c.axis.join(", ")}${c.axis_size > c.axis.length ? ", …" : ""}). `) +
        `Each cluster's most over-represented features (no p-values: the clusters come from the same activations). ` +
        `Rows shown: ${integer(c.rows.length)} of ${integer(c.total_rows)}.`),
      ...(c.summaries || []).map((s) => el("div", { class: "cluster-summary" },
        el("h3", {}, `cluster ${s.cluster} · ${integer(s.size)} documents`),
        el("p", {}, el("b", {}, "words: "), s.words || "—"),
        el("ol", { class: "cluster-examples" }, ...s.examples.map((e) =>
          el("li", {}, el("span", { class: "note" }, `${data.names[e.name].title_from === "column" ? data.names[e.name].title + " · " : ""}row ${integer(e.document)}: `), e.text))))),
      el("h3", {}, "Over-represented features"),
      table,
    ];
  }

  // ---- navigation -----------------------------------------------------------------------------------
  const pages = [["features", "Features", overviewPage]];
  if (data.diff) pages.push(["diff", "Differences", diffPage]);
  if (data.clusters) pages.push(["clusters", "Clusters", clustersPage]);
  document.getElementById("title").textContent = data.title;
  const nav = document.getElementById("nav");
  nav.append(...pages.map(([key, name]) => el("a", { href: "#" + key, id: "nav-" + key }, name)));

  function route() {
    const hash = decodeURIComponent(location.hash.slice(1));
    const match = /^feature\/(\d+)$/.exec(hash);
    const page = pages.find(([key]) => key === hash) || pages[0];
    nav.querySelectorAll("a").forEach((a) => a.classList.toggle("current", !match && a.id === "nav-" + page[0]));
    view.replaceChildren(...(match ? featurePage(Number(match[1])) : page[2]()).filter((node) => node !== null));
    view.dataset.page = match ? "feature" : page[0];
    window.scrollTo(0, 0);
  }
  window.addEventListener("hashchange", route);
  route();
})();
