// On every page: the language switch submits itself, and server times are shown in the viewer's zone.

const switcher = document.querySelector("[data-language-switch]");
if (switcher) {
  const select = switcher.querySelector("select");
  if (select) select.addEventListener("change", () => switcher.submit());
}

const formatter = new Intl.DateTimeFormat(document.documentElement.lang || undefined, {
  dateStyle: "medium",
  timeStyle: "short",
});
for (const element of document.querySelectorAll("time[data-local]")) {
  const when = new Date(element.dateTime);
  if (!Number.isNaN(when.getTime())) element.textContent = formatter.format(when);
}
