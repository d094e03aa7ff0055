// Sort a table by clicking a header (numbers as numbers), filter its rows with a search box.
// Plain JavaScript, no library, no server: the report folder opens from disk.
"use strict";
function cellValue(row, i) {
  const text = row.cells[i] ? row.cells[i].textContent.trim() : "";
  const num = Number(text);
  return text !== "" && !Number.isNaN(num) ? num : text.toLowerCase();
}
const NATURAL = new Intl.Collator(undefined, {numeric: true, sensitivity: "base"});
function compare(a, b) {
  // text in natural order: digit runs compare as numbers (run_2 before run_10)
  if (typeof a === "string" && typeof b === "string") return NATURAL.compare(a, b);
  if (typeof a === typeof b) return a < b ? -1 : a > b ? 1 : 0;
  return typeof a === "number" ? -1 : 1;  // numbers before text
}
document.querySelectorAll("table.sortable").forEach(function (table) {
  const heads = table.tHead.rows[0].cells;
  Array.prototype.forEach.call(heads, function (th, i) {
    th.addEventListener("click", function () {
      const down = th.classList.contains("asc");
      Array.prototype.forEach.call(heads, function (h) { h.classList.remove("asc", "desc"); });
      th.classList.add(down ? "desc" : "asc");
      const body = table.tBodies[0];
      const rows = Array.prototype.slice.call(body.rows);
      rows.sort(function (a, b) {
        const c = compare(cellValue(a, i), cellValue(b, i));
        return down ? -c : c;
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
});
// The rows a filter acts on: every body row of the table but the section headings
// (tr.paper), which stay visible while any row of their section does.
function itemRows(table) {
  const out = [];
  Array.prototype.forEach.call(table.tBodies, function (body) {
    Array.prototype.forEach.call(body.rows, function (r) {
      if (!r.classList.contains("paper")) out.push(r);
    });
  });
  return out;
}
function showCount(id) {
  const table = document.getElementById(id);
  const count = document.querySelector(".count[data-table='" + id + "']");
  if (!table || !count) return;
  const rows = itemRows(table);
  const shown = rows.filter(function (r) { return !r.hidden; }).length;
  count.textContent = shown + " of " + rows.length + " " + (count.dataset.noun || "runs");
}
document.querySelectorAll("input.filter").forEach(function (input) {
  const id = input.dataset.table;
  input.addEventListener("input", function () {
    const words = input.value.toLowerCase().split(/\s+/).filter(Boolean);
    const table = document.getElementById(id);
    itemRows(table).forEach(function (r) {
      const text = r.textContent.toLowerCase();
      r.hidden = !words.every(function (w) { return text.indexOf(w) >= 0; });
    });
    Array.prototype.forEach.call(table.tBodies, function (body) {
      const heading = body.querySelector("tr.paper");
      if (heading) heading.hidden = !Array.prototype.some.call(body.rows, function (r) {
        return r !== heading && !r.hidden;
      });
    });
    showCount(id);
  });
  showCount(id);
});
