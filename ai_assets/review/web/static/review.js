// The review app's keyboard: served from the package (CSP script-src 'self', no inline script).
// Item page: 1-5 pick a suggestion, "/" focuses the intent type-ahead, Enter submits (approve
// when the intent is the model's own, correct otherwise), "s" skips to the next item.
// Queue page: Enter opens the first item. Everything also works without this file.
"use strict";

(function () {
  function typing(target) {
    var tag = target && target.tagName;
    return tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT" || (target && target.isContentEditable);
  }

  function labelsFrom(datalist) {
    var out = [];
    if (!datalist) { return out; }
    var options = datalist.querySelectorAll("option");
    for (var i = 0; i < options.length; i++) { out.push(options[i].value); }
    return out;
  }

  // A type-ahead list under `input` over `labels`; `onExact` runs on Enter when the value is a label.
  function typeahead(input, list, labels, onExact, onChange) {
    var matches = [], active = -1;
    input.removeAttribute("list");  // our own list replaces the browser's datalist popup

    function render() {
      list.textContent = "";
      if (!matches.length) { list.hidden = true; return; }
      matches.forEach(function (label, i) {
        var li = document.createElement("li");
        li.textContent = label;  // text, never HTML
        if (i === active) { li.className = "active"; }
        li.addEventListener("mousedown", function (event) {
          event.preventDefault();
          choose(label);
        });
        list.appendChild(li);
      });
      list.hidden = false;
    }

    function choose(label) {
      input.value = label;
      matches = []; active = -1;
      render();
      onChange();
    }

    function update() {
      var q = input.value.trim().toLowerCase().replace(/\s+/g, "_");
      onChange();
      if (!q) { matches = []; active = -1; render(); return; }
      var starts = [], contains = [];
      labels.forEach(function (label) {
        var l = label.toLowerCase();
        if (l.indexOf(q) === 0) { starts.push(label); } else if (l.indexOf(q) > 0) { contains.push(label); }
      });
      matches = starts.concat(contains).slice(0, 8);
      active = matches.length ? 0 : -1;
      if (matches.length === 1 && matches[0] === input.value) { matches = []; active = -1; }
      render();
    }

    input.addEventListener("input", update);
    input.addEventListener("blur", function () { matches = []; active = -1; render(); });
    input.addEventListener("keydown", function (event) {
      if (event.key === "ArrowDown" || event.key === "ArrowUp") {
        if (!matches.length) { return; }
        event.preventDefault();
        var step = event.key === "ArrowDown" ? 1 : -1;
        active = (active + step + matches.length) % matches.length;
        render();
      } else if (event.key === "Enter") {
        event.preventDefault();
        if (labels.indexOf(input.value) >= 0 && (active < 0 || matches[active] === input.value)) {
          onExact();
        } else if (active >= 0) {
          choose(matches[active]);  // first Enter completes, the next one submits
        }
      } else if (event.key === "Escape") {
        matches = []; active = -1; render();
        input.blur();
      }
    });
  }

  function itemPage(form) {
    var model = form.getAttribute("data-model-intent");
    var input = document.getElementById("intent");
    var choice = document.getElementById("choice");
    var suggestions = document.querySelectorAll("[data-suggestion]");
    var labels = labelsFrom(document.getElementById("labels"));
    var submitted = false;

    function kind() {
      var value = input.value.trim();
      if (!value || labels.indexOf(value) < 0) { return null; }
      if (value === "out_of_scope") { return "reject_out_of_scope"; }
      return value === model ? "approve" : "correct";
    }

    function describe() {
      var k = kind();
      for (var i = 0; i < suggestions.length; i++) {
        suggestions[i].classList.toggle("picked", suggestions[i].getAttribute("data-intent") === input.value);
      }
      if (!k) {
        choice.textContent = input.value.trim() ? "Not a label yet: keep typing or pick from the list." : "Pick an intent.";
      } else {
        choice.textContent = "Enter: " + (k === "approve" ? "approve " : k === "correct" ? "correct to " : "") +
          (k === "reject_out_of_scope" ? "reject as out of scope" : input.value);
      }
    }

    function submit() {
      var k = kind();
      if (!k || submitted) { if (!k) { input.focus(); } return; }
      var button = document.getElementById(k === "approve" ? "btn-approve" : k === "correct" ? "btn-correct" : "btn-out-of-scope")
        || document.getElementById("btn-correct");
      submitted = true;
      form.requestSubmit(button);
    }

    form.addEventListener("submit", function () {
      submitted = true;
      var buttons = form.querySelectorAll("button");
      // Disabled after the browser has collected the submitter's value.
      setTimeout(function () { for (var i = 0; i < buttons.length; i++) { buttons[i].disabled = true; } }, 0);
    });

    typeahead(input, document.getElementById("typeahead"), labels, submit, describe);

    document.addEventListener("keydown", function (event) {
      if (event.ctrlKey || event.metaKey || event.altKey || typing(event.target)) { return; }
      if (event.key >= "1" && event.key <= "5") {
        var pick = suggestions[Number(event.key) - 1];
        if (pick) {
          event.preventDefault();
          input.value = pick.getAttribute("data-intent");
          describe();
        }
      } else if (event.key === "Enter") {
        if (event.target && (event.target.tagName === "BUTTON" || event.target.tagName === "A")) { return; }
        event.preventDefault();
        submit();
      } else if (event.key === "/") {
        event.preventDefault();
        input.focus();
        input.select();
      } else if (event.key === "s") {
        var skip = document.getElementById("skip");
        if (skip) { event.preventDefault(); window.location.assign(skip.href); }
      }
    });
    describe();
  }

  function overridePage(form) {
    var input = document.getElementById("intent");
    var labels = labelsFrom(document.getElementById("labels"));
    typeahead(input, document.getElementById("typeahead"), labels, function () {
      document.getElementById("compensation").focus();
    }, function () {});
  }

  function queuePage() {
    document.addEventListener("keydown", function (event) {
      if (event.key !== "Enter" || typing(event.target) || event.target.tagName === "A" || event.target.tagName === "BUTTON") { return; }
      var start = document.querySelector("[data-start]");
      if (start) { event.preventDefault(); window.location.assign(start.href); }
    });
  }

  function skipOnly() {
    document.addEventListener("keydown", function (event) {
      if (event.key === "s" && !typing(event.target)) {
        var skip = document.getElementById("skip");
        if (skip) { event.preventDefault(); window.location.assign(skip.href); }
      }
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var decision = document.getElementById("decision");
    var override = document.getElementById("override");
    if (decision) { itemPage(decision); }
    else if (override) { overridePage(override); }
    else if (document.getElementById("not-open")) { skipOnly(); }
    else if (document.body.classList.contains("page-queue")) { queuePage(); }
  });
})();
