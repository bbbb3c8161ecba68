// Join buttons call POST /api/rooms/{id}/join; a refusal (409 room_full, ...) is shown, not swallowed.
// Without this script the same buttons post the form to the page view, which calls the same service.

import { api, format, readJson, showError } from "./api.js";

const strings = readJson("list-strings");
const errorBox = document.getElementById("page-error");

function markFull(form) {
  const row = form.closest("tr");
  if (!row || row.classList.contains("full")) return;
  row.classList.add("full");
  const tag = document.createElement("span");
  tag.className = "tag full-tag";
  tag.textContent = strings.full || "Full";
  const cell = row.querySelector("td.personnel");
  if (cell) cell.append(" ", tag);
}

for (const form of document.querySelectorAll("form[data-join-room]")) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = form.querySelector("button");
    if (button.disabled) return;
    button.disabled = true;
    errorBox.hidden = true;
    try {
      await api("POST", `/api/rooms/${form.dataset.joinRoom}/join`, {});
      window.location.assign(form.dataset.roomUrl);
    } catch (error) {
      showError(errorBox, strings[error.code] || format(strings.error_generic, { detail: error.detail }));
      if (error.code === "room_full") {
        markFull(form);
      } else {
        button.disabled = false;
      }
    }
  });
}
