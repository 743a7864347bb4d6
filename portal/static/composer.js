// Staff composer: live encoding and segment count, and an offer to swap smart punctuation.
// The rules match notifier/gsm.py: GSM-7 160/153 per segment with extension characters
// counting double, UCS-2 70/67 counting UTF-16 code units.
(function () {
  "use strict";
  var BASIC = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?" +
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
  var EXTENSION = "^{}\\[~]|€\f";
  var SMART = {"\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u201c": '"', "\u201d": '"',
    "\u201e": '"', "\u201f": '"', "\u2013": "-", "\u2014": "-", "\u2026": "...", "\u00a0": " ", "\u2022": "-"};

  function count(text) {
    var septets = 0, gsm = true;
    for (var ch of text) {
      if (BASIC.indexOf(ch) >= 0) { septets += 1; }
      else if (EXTENSION.indexOf(ch) >= 0) { septets += 2; }
      else { gsm = false; break; }
    }
    var units = gsm ? septets : text.length;  // String length is in UTF-16 code units.
    var single = gsm ? 160 : 70, split = gsm ? 153 : 67;
    return {encoding: gsm ? "GSM-7" : "UCS-2", units: units, segments: units <= single ? 1 : Math.ceil(units / split)};
  }

  function smartCharacters(text) {
    return Array.from(text).filter(function (ch) { return SMART[ch]; });
  }

  window.pawpostCount = count;

  document.querySelectorAll("[data-composer]").forEach(function (form) {
    var body = form.querySelector("textarea");
    var output = form.querySelector("[data-counter]");
    var offer = form.querySelector("[data-smart-offer]");
    function update() {
      var result = count(body.value);
      output.textContent = result.encoding + " · " + result.units + " characters · " +
        result.segments + (result.segments === 1 ? " segment" : " segments");
      output.dataset.encoding = result.encoding;
      output.dataset.segments = result.segments;
      offer.hidden = !(result.encoding === "UCS-2" && smartCharacters(body.value).length);
    }
    offer.querySelector("button").addEventListener("click", function () {
      body.value = Array.from(body.value).map(function (ch) { return SMART[ch] || ch; }).join("");
      update();
      body.focus();
    });
    body.addEventListener("input", update);
    update();
  });
})();
