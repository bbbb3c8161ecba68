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

// A skip link to a form field moves the focus there, not only the scroll position.
for (const link of document.querySelectorAll("a.skip-link")) {
  link.addEventListener("click", (event) => {
    const target = document.getElementById(link.hash.slice(1));
    if (!target) return;
    event.preventDefault();
    target.focus();
  });
}
