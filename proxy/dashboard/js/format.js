// How figures are shown. Tests read them back: every format is a plain number
// (with en-US thousands separators) and a unit, rounded at its last digit.
const DASH = "–";

export const int = (n) => (n === null || n === undefined ? DASH : Math.round(n).toLocaleString("en-US"));

export function usd(n) {
  if (n === null || n === undefined) return DASH;
  const digits = Math.abs(n) < 1 ? 6 : 2;
  return `$${n.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits })}`;
}

export function ms(n) {
  if (n === null || n === undefined) return DASH;
  return `${n.toLocaleString("en-US", { minimumFractionDigits: 1, maximumFractionDigits: 1 })} ms`;
}

export function percent(part, whole) {
  return whole ? `${((100 * part) / whole).toFixed(1)}%` : DASH;
}

export function when(seconds) {
  if (seconds === null || seconds === undefined) return DASH;
  return new Date(seconds * 1000).toLocaleString("en-GB", { dateStyle: "medium", timeStyle: "short" });
}

export function iso(text) {
  return text ? when(Date.parse(text) / 1000) : DASH;
}

export const list = (items) => (items && items.length ? items.join(", ") : DASH);
export const yesNo = (flag) => (flag === undefined || flag === null ? DASH : flag ? "yes" : "no");

// a price per million tokens: cents, or to a hundredth of a cent
export function rate(n) {
  if (n === null || n === undefined) return DASH;
  return `$${n.toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 4 })}`;
}
