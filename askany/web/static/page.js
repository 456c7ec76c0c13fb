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
</script>"""
