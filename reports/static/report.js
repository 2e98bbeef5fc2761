(function () {
  "use strict";
  // Sorting: a click on a header with data-sort-type sorts its table body by the cells' data-sort values
  // (numbers, or text); empty values sort last. Rows are only reordered, never rebuilt from strings.
  function cellKey(row, index) {
    var cell = row.cells[index];
    if (!cell) { return ""; }
    var v = cell.getAttribute("data-sort");
    return v === null ? cell.textContent.trim() : v;
  }
  function sortTable(table, index, type, dir) {
    var body = table.tBodies[0];
    if (!body) { return; }
    var rows = Array.prototype.slice.call(body.rows);
    var keyed = rows.map(function (row, i) { return { row: row, key: cellKey(row, index), i: i }; });
    keyed.sort(function (a, b) {
      var ea = a.key === "", eb = b.key === "";
      if (ea || eb) { return ea === eb ? a.i - b.i : (ea ? 1 : -1); }
      var c;
      if (type === "num") { c = parseFloat(a.key) - parseFloat(b.key); }
      else { c = a.key.localeCompare(b.key, "en"); }
      if (c === 0 || isNaN(c)) { return a.i - b.i; }
      return dir === "ascending" ? c : -c;
    });
    keyed.forEach(function (k) { body.appendChild(k.row); });
  }
  Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), function (table) {
    var heads = table.tHead ? table.tHead.rows[0].cells : [];
    Array.prototype.forEach.call(heads, function (th, index) {
      var type = th.getAttribute("data-sort-type");
      if (!type) { return; }
      th.tabIndex = 0;
      var activate = function () {
        var dir = th.getAttribute("aria-sort") === "ascending" ? "descending" : "ascending";
        Array.prototype.forEach.call(heads, function (h) {
          if (h.hasAttribute("aria-sort")) { h.setAttribute("aria-sort", "none"); }
        });
        th.setAttribute("aria-sort", dir);
        sortTable(table, index, type, dir);
      };
      th.addEventListener("click", activate);
      th.addEventListener("keydown", function (e) {
        if (e.key === "Enter" || e.key === " ") { e.preventDefault(); activate(); }
      });
    });
  });

  // Filtering the submissions table: free text over data-search, and the verdict buttons.
  var table = document.getElementById("subs-table");
  var input = document.getElementById("filter");
  if (!table || !input) { return; }
  var buttons = Array.prototype.slice.call(document.querySelectorAll("button.vfilter"));
  var shown = document.getElementById("shown");
  function apply() {
    var words = input.value.toLowerCase().split(/\s+/).filter(function (w) { return w.length > 0; });
    var wanted = buttons.filter(function (b) { return b.getAttribute("aria-pressed") === "true"; })
      .map(function (b) { return b.getAttribute("data-verdict"); });
    var rows = table.tBodies[0].rows, n = 0;
    Array.prototype.forEach.call(rows, function (row) {
      var text = row.getAttribute("data-search") || "";
      var ok = words.every(function (w) { return text.indexOf(w) !== -1; }) &&
        (wanted.length === 0 || wanted.indexOf(row.getAttribute("data-verdict")) !== -1);
      row.hidden = !ok;
      if (ok) { n += 1; }
    });
    if (shown) { shown.textContent = n + " of " + rows.length + " shown"; }
  }
  input.addEventListener("input", apply);
  buttons.forEach(function (b) {
    b.addEventListener("click", function () {
      b.setAttribute("aria-pressed", b.getAttribute("aria-pressed") === "true" ? "false" : "true");
      apply();
    });
  });
  window.addEventListener("pageshow", apply);
  apply();
}());
