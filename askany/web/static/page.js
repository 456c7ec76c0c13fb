// Citation links jump to their source card and flash it. Put inline into the page's <head>
// (launch(head=...)), so nothing is fetched for it.
document.addEventListener("click", function (event) {
  var link = event.target.closest && event.target.closest('a[href^="#askany-"]');
  if (!link) return;
  var card = document.getElementById(link.getAttribute("href").slice(1));
  if (!card) return;
  event.preventDefault();
  event.stopPropagation();
  var details = card.closest("details");
  if (details) details.open = true;
  card.scrollIntoView({behavior: "smooth", block: "nearest"});
  card.classList.add("askany-flash");
  setTimeout(function () { card.classList.remove("askany-flash"); }, 1500);
}, true);

// Copy buttons: a code block's copies its code; an answer's copies the answer's text.
function askanyCopy(text, button) {
  function done() {
    button.classList.add("askany-copied");
    setTimeout(function () { button.classList.remove("askany-copied"); }, 1500);
  }
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(text).then(done, function () { askanyCopyFallback(text); done(); });
  } else {
    askanyCopyFallback(text);
    done();
  }
}
function askanyCopyFallback(text) {
  var area = document.createElement("textarea");
  area.value = text;
  area.style.position = "fixed";
  area.style.left = "-9999px";
  document.body.appendChild(area);
  area.select();
  try { document.execCommand("copy"); } catch (error) { /* nothing more to try */ }
  area.remove();
}
document.addEventListener("click", function (event) {
  var button = event.target.closest && event.target.closest("button.askany-copy");
  if (!button) return;
  event.preventDefault();
  event.stopPropagation();
  var code = button.closest(".askany-code");
  var source = code ? code.querySelector("pre") : button.closest(".message, .message-content, [data-testid]");
  if (!code && source) source = source.querySelector(".askany-md") || source;
  if (source) askanyCopy(source.innerText, button);
}, true);

// The source viewer: a citation [n] or a card's "open" button asks the server for the passage in its
// document, through a hidden textbox and button (Gradio events start from components).
function askanyView(chunk) {
  var box = document.querySelector("#askany-view-chunk textarea, #askany-view-chunk input");
  var go = document.getElementById("askany-view-go");
  if (!box || !go || !chunk) return;
  box.value = chunk;
  box.dispatchEvent(new Event("input", {bubbles: true}));
  setTimeout(function () { go.click(); }, 50);
}
document.addEventListener("click", function (event) {
  var target = event.target.closest && event.target.closest("button.askany-open, a.askany-cite");
  if (!target) return;
  var card = target.classList.contains("askany-open") ? target.closest(".askany-source")
    : document.getElementById((target.getAttribute("href") || "").slice(1));
  if (card && card.getAttribute("data-chunk")) askanyView(card.getAttribute("data-chunk"));
}, true);
// A new passage in the viewer scrolls its matched chunk into view.
new MutationObserver(function () {
  var hit = document.querySelector("#askany-viewer .askany-ctx-hit");
  if (hit && hit.getAttribute("data-seen") !== "1") {
    hit.setAttribute("data-seen", "1");
    hit.scrollIntoView({block: "center"});
  }
}).observe(document.documentElement, {childList: true, subtree: true});
