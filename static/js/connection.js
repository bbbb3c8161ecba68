// The chat socket's state as the page shows it: nothing while connected; a banner (role=status, read out
// by screen readers) while the socket is down, with the member list greyed out and marked aria-disabled,
// since who is online cannot be known meanwhile. The first connect shows the banner only if it is slow,
// so an ordinary page load does not flash it.

const SLOW_FIRST_CONNECT_MS = 1500;

export class ConnectionBanner {
  constructor({ element, presenceElement }) {
    this.element = element;
    this.presenceElement = presenceElement;
    this.slowTimer = null;
  }

  set(state, text) {
    clearTimeout(this.slowTimer);
    this.element.dataset.state = state;
    this.element.textContent = text;
    if (state === "connecting") {
      this.element.hidden = true;
      this.slowTimer = setTimeout(() => {
        this.element.hidden = false;
      }, SLOW_FIRST_CONNECT_MS);
    } else {
      this.element.hidden = state === "connected";
    }
    const down = state === "reconnecting" || state === "closed";
    if (this.presenceElement) {
      this.presenceElement.classList.toggle("stale", down);
      const list = this.presenceElement.querySelector("ul");
      if (list) list.setAttribute("aria-disabled", String(down));
    }
  }
}
