// Renders the ERD page's Mermaid source; a separate file so the page needs no inline script.
mermaid.initialize({
  startOnLoad: false,
  securityLevel: "strict",
  theme: "neutral",
  er: { useMaxWidth: false },
});
mermaid.run({ querySelector: "pre.mermaid" }).then(
  () => document.body.setAttribute("data-erd", "rendered"),
  (err) => {
    document.body.setAttribute("data-erd", "failed");
    const box = document.getElementById("erd-error");
    box.className = "error";
    box.textContent = "The diagram could not be drawn: " + err;
  },
);
