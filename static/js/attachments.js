// Attachments in the chat page: uploading files from the composer (XMLHttpRequest, for its upload
// progress events) and drawing a message's attachments (image previews, file cards).
// Everything from the server is set as text or as an attribute (names, links); never parsed as HTML.

import { ApiError, csrfToken, format } from "./api.js";

// POST one file to the room as multipart `file`; resolves to the contract's Attachment, rejects with an
// ApiError carrying the server's {code, detail} (file_too_large, file_type_not_allowed, ...).
export function uploadFile(url, file, onProgress) {
  let xhr;
  const done = new Promise((resolve, reject) => {
    xhr = new XMLHttpRequest();
    xhr.open("POST", url);
    xhr.responseType = "json";
    xhr.withCredentials = true;
    xhr.setRequestHeader("Accept", "application/json");
    xhr.setRequestHeader("X-CSRFToken", csrfToken());
    xhr.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable) onProgress(event.loaded, event.total);
    });
    xhr.addEventListener("load", () => {
      const data = xhr.response && typeof xhr.response === "object" ? xhr.response : null;
      if (xhr.status === 201 && data) {
        resolve(data);
        return;
      }
      const code = data && typeof data.code === "string" ? data.code : `http_${xhr.status}`;
      const detail = data && typeof data.detail === "string" ? data.detail : xhr.statusText;
      reject(new ApiError(xhr.status, code, detail, data && data.fields));
    });
    xhr.addEventListener("error", () => reject(new ApiError(0, "network_error", "network error")));
    xhr.addEventListener("abort", () => reject(new ApiError(0, "aborted", "aborted")));
    const body = new FormData();
    body.append("file", file, file.name || "file");
    xhr.send(body);
  });
  return { done, abort: () => xhr.abort() };
}

// "1.5 MB": sizes as the viewer's language writes numbers.
export function formatSize(bytes, lang) {
  const units = ["byte", "kilobyte", "megabyte", "gigabyte"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return new Intl.NumberFormat(lang, {
    style: "unit",
    unit: units[unit],
    unitDisplay: "short",
    maximumFractionDigits: unit === 0 ? 0 : 1,
  }).format(value);
}

const THUMBNAIL_SIDE = 320; // the server's ATTACHMENT_THUMBNAIL_PIXELS default: the preview's box

function previewElement(attachment, strings) {
  const link = document.createElement("a");
  link.className = "attachment-image";
  link.href = attachment.url;
  link.target = "_blank";
  link.rel = "noopener noreferrer";
  link.setAttribute("data-testid", "attachment-image");
  const image = document.createElement("img");
  image.src = attachment.thumbnail_url;
  image.alt = format(strings.imageAlt, { name: attachment.name });
  image.loading = "lazy";
  if (attachment.width && attachment.height) {
    // Attributes, not styles (the CSP allows no inline style): the box is reserved before the image loads.
    const scale = Math.min(1, THUMBNAIL_SIDE / Math.max(attachment.width, attachment.height));
    image.width = Math.max(1, Math.round(attachment.width * scale));
    image.height = Math.max(1, Math.round(attachment.height * scale));
  }
  link.append(image);
  return link;
}

function fileCardElement(attachment, strings, lang) {
  const card = document.createElement("a");
  card.className = "attachment-file";
  card.href = attachment.url;
  card.download = attachment.name;
  card.rel = "noopener noreferrer";
  card.setAttribute("data-testid", "attachment-file");
  card.setAttribute("aria-label", format(strings.download, { name: attachment.name }));
  const name = document.createElement("span");
  name.className = "attachment-name";
  name.setAttribute("data-testid", "attachment-name");
  name.textContent = attachment.name;
  const size = document.createElement("span");
  size.className = "attachment-size";
  size.setAttribute("data-testid", "attachment-size");
  size.textContent = formatSize(attachment.size, lang);
  card.append(name, size);
  return card;
}

// A message's attachments: images as clickable previews, everything else as a download card.
export function attachmentsElement(attachments, strings, lang) {
  const box = document.createElement("div");
  box.className = "attachments";
  box.setAttribute("data-testid", "attachments");
  for (const attachment of attachments) {
    box.append(
      attachment.thumbnail_url ? previewElement(attachment, strings) : fileCardElement(attachment, strings, lang),
    );
  }
  return box;
}
