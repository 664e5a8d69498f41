"""Write the four datasets in data/evals/ (capitals, sentiment, dates, arithmetic).

Re-runnable and deterministic: `python data/evals/generate.py` rewrites identical files (fixed seeds,
no clock, no network).  Capitals come from the hand-written table below; the other three sets are
generated from templates.  Items that appear as worked examples in data/prompts/*/few_shot_*.txt are
excluded here, so a few-shot prompt never shows the model the answer to an item it is graded on.
"""
from __future__ import annotations

import calendar
import json
import random
from datetime import date, timedelta
from pathlib import Path

OUT_DIR = Path(__file__).resolve().parent
SEED = 20240611
N_GENERATED = 200

# Sovereign states (UN members plus the Holy See) with one undisputed capital, in English ASCII
# spelling.  Left out on purpose (see EXCLUDED_CAPITALS): countries with several capitals, a
# disputed capital, a capital being moved, or an answer whose spelling varies (St./Saint, D.C.).
COUNTRY_CAPITALS: tuple[tuple[str, str], ...] = (
    ("Afghanistan", "Kabul"), ("Albania", "Tirana"), ("Algeria", "Algiers"),
    ("Andorra", "Andorra la Vella"), ("Angola", "Luanda"), ("Argentina", "Buenos Aires"),
    ("Armenia", "Yerevan"), ("Australia", "Canberra"), ("Austria", "Vienna"),
    ("Azerbaijan", "Baku"), ("Bahamas", "Nassau"), ("Bahrain", "Manama"), ("Bangladesh", "Dhaka"),
    ("Barbados", "Bridgetown"), ("Belarus", "Minsk"), ("Belgium", "Brussels"),
    ("Belize", "Belmopan"), ("Bhutan", "Thimphu"), ("Bosnia and Herzegovina", "Sarajevo"),
    ("Botswana", "Gaborone"), ("Brazil", "Brasilia"), ("Brunei", "Bandar Seri Begawan"),
    ("Bulgaria", "Sofia"), ("Burkina Faso", "Ouagadougou"), ("Cabo Verde", "Praia"),
    ("Cambodia", "Phnom Penh"), ("Cameroon", "Yaounde"), ("Central African Republic", "Bangui"),
    ("Chad", "N'Djamena"), ("Chile", "Santiago"), ("China", "Beijing"), ("Colombia", "Bogota"),
    ("Comoros", "Moroni"), ("Republic of the Congo", "Brazzaville"),
    ("Democratic Republic of the Congo", "Kinshasa"), ("Costa Rica", "San Jose"),
    ("Croatia", "Zagreb"), ("Cuba", "Havana"), ("Cyprus", "Nicosia"), ("Czechia", "Prague"),
    ("Denmark", "Copenhagen"), ("Djibouti", "Djibouti"), ("Dominica", "Roseau"),
    ("Dominican Republic", "Santo Domingo"), ("Ecuador", "Quito"), ("Egypt", "Cairo"),
    ("El Salvador", "San Salvador"), ("Eritrea", "Asmara"), ("Estonia", "Tallinn"),
    ("Ethiopia", "Addis Ababa"), ("Fiji", "Suva"), ("Finland", "Helsinki"),
    ("Gabon", "Libreville"), ("Gambia", "Banjul"), ("Georgia", "Tbilisi"), ("Germany", "Berlin"),
    ("Ghana", "Accra"), ("Greece", "Athens"), ("Guatemala", "Guatemala City"),
    ("Guinea", "Conakry"), ("Guinea-Bissau", "Bissau"), ("Guyana", "Georgetown"),
    ("Haiti", "Port-au-Prince"), ("Honduras", "Tegucigalpa"), ("Hungary", "Budapest"),
    ("Iceland", "Reykjavik"), ("India", "New Delhi"), ("Iran", "Tehran"), ("Iraq", "Baghdad"),
    ("Ireland", "Dublin"), ("Italy", "Rome"), ("Jamaica", "Kingston"), ("Jordan", "Amman"),
    ("North Korea", "Pyongyang"), ("South Korea", "Seoul"), ("Kuwait", "Kuwait City"),
    ("Kyrgyzstan", "Bishkek"), ("Laos", "Vientiane"), ("Latvia", "Riga"), ("Lebanon", "Beirut"),
    ("Lesotho", "Maseru"), ("Liberia", "Monrovia"), ("Libya", "Tripoli"),
    ("Liechtenstein", "Vaduz"), ("Lithuania", "Vilnius"), ("Luxembourg", "Luxembourg"),
    ("Madagascar", "Antananarivo"), ("Malawi", "Lilongwe"), ("Maldives", "Male"),
    ("Mali", "Bamako"), ("Malta", "Valletta"), ("Marshall Islands", "Majuro"),
    ("Mauritania", "Nouakchott"), ("Mauritius", "Port Louis"), ("Mexico", "Mexico City"),
    ("Micronesia", "Palikir"), ("Moldova", "Chisinau"), ("Monaco", "Monaco"),
    ("Mongolia", "Ulaanbaatar"), ("Montenegro", "Podgorica"), ("Morocco", "Rabat"),
    ("Mozambique", "Maputo"), ("Myanmar", "Naypyidaw"), ("Namibia", "Windhoek"),
    ("Nepal", "Kathmandu"), ("New Zealand", "Wellington"), ("Nicaragua", "Managua"),
    ("Niger", "Niamey"), ("Nigeria", "Abuja"), ("North Macedonia", "Skopje"), ("Norway", "Oslo"),
    ("Oman", "Muscat"), ("Pakistan", "Islamabad"), ("Palau", "Ngerulmud"),
    ("Panama", "Panama City"), ("Papua New Guinea", "Port Moresby"), ("Paraguay", "Asuncion"),
    ("Philippines", "Manila"), ("Poland", "Warsaw"), ("Portugal", "Lisbon"), ("Qatar", "Doha"),
    ("Romania", "Bucharest"), ("Russia", "Moscow"), ("Rwanda", "Kigali"),
    ("Saint Kitts and Nevis", "Basseterre"), ("Saint Lucia", "Castries"),
    ("Saint Vincent and the Grenadines", "Kingstown"), ("Samoa", "Apia"),
    ("San Marino", "San Marino"), ("Sao Tome and Principe", "Sao Tome"),
    ("Saudi Arabia", "Riyadh"), ("Senegal", "Dakar"), ("Serbia", "Belgrade"),
    ("Seychelles", "Victoria"), ("Sierra Leone", "Freetown"), ("Singapore", "Singapore"),
    ("Slovakia", "Bratislava"), ("Slovenia", "Ljubljana"), ("Solomon Islands", "Honiara"),
    ("Somalia", "Mogadishu"), ("South Sudan", "Juba"), ("Spain", "Madrid"),
    ("Suriname", "Paramaribo"), ("Sweden", "Stockholm"), ("Switzerland", "Bern"),
    ("Syria", "Damascus"), ("Tajikistan", "Dushanbe"), ("Thailand", "Bangkok"),
    ("Timor-Leste", "Dili"), ("Togo", "Lome"), ("Tonga", "Nuku'alofa"),
    ("Trinidad and Tobago", "Port of Spain"), ("Tunisia", "Tunis"), ("Turkey", "Ankara"),
    ("Turkmenistan", "Ashgabat"), ("Tuvalu", "Funafuti"), ("Uganda", "Kampala"),
    ("Ukraine", "Kyiv"), ("United Arab Emirates", "Abu Dhabi"), ("United Kingdom", "London"),
    ("Uruguay", "Montevideo"), ("Uzbekistan", "Tashkent"), ("Vanuatu", "Port Vila"),
    ("Vatican City", "Vatican City"), ("Venezuela", "Caracas"), ("Vietnam", "Hanoi"),
    ("Zambia", "Lusaka"), ("Zimbabwe", "Harare"),
)

# Dependent territories with a single seat of government, to bring the set near 200 items.
TERRITORY_CAPITALS: tuple[tuple[str, str], ...] = (
    ("Greenland", "Nuuk"), ("Faroe Islands", "Torshavn"), ("Bermuda", "Hamilton"),
    ("Puerto Rico", "San Juan"), ("New Caledonia", "Noumea"), ("French Polynesia", "Papeete"),
    ("Aruba", "Oranjestad"), ("Curacao", "Willemstad"), ("Cayman Islands", "George Town"),
    ("Isle of Man", "Douglas"), ("Cook Islands", "Avarua"), ("American Samoa", "Pago Pago"),
    ("Jersey", "Saint Helier"), ("Guernsey", "Saint Peter Port"),
    ("Northern Mariana Islands", "Saipan"), ("Turks and Caicos Islands", "Cockburn Town"),
    ("British Virgin Islands", "Road Town"), ("United States Virgin Islands", "Charlotte Amalie"),
    ("Anguilla", "The Valley"), ("Gibraltar", "Gibraltar"),
)

EXCLUDED_CAPITALS: dict[str, str] = {
    "Bolivia": "two capitals (Sucre, La Paz)",
    "South Africa": "three capitals (Pretoria, Cape Town, Bloemfontein)",
    "Netherlands": "capital Amsterdam, seat of government The Hague",
    "Israel": "capital disputed",
    "Palestine": "capital disputed",
    "Sri Lanka": "two capitals (Sri Jayawardenepura Kotte, Colombo)",
    "Cote d'Ivoire": "capital Yamoussoukro, seat of government Abidjan",
    "Malaysia": "capital Kuala Lumpur, seat of government Putrajaya",
    "Benin": "capital Porto-Novo, seat of government Cotonou",
    "Tanzania": "capital Dodoma, many offices in Dar es Salaam",
    "Eswatini": "two capitals (Mbabane, Lobamba)",
    "Nauru": "no official capital",
    "Burundi": "capital moved from Bujumbura to Gitega in 2019",
    "Kazakhstan": "capital renamed Astana / Nur-Sultan / Astana since 2019",
    "Indonesia": "capital being moved from Jakarta to Nusantara",
    "Equatorial Guinea": "capital being moved from Malabo to Ciudad de la Paz",
    "Yemen": "capital Sanaa held by a rival government; Aden used instead",
    "Sudan": "government moved to Port Sudan during the war",
    "Kiribati": "capital named variously Tarawa / South Tarawa",
    "Antigua and Barbuda": "answer spelled St. John's or Saint John's",
    "Grenada": "answer spelled St. George's or Saint George's",
    "United States": "answer spelled Washington, D.C. / Washington DC / Washington",
    "Kosovo": "statehood disputed",
    "Taiwan": "statehood disputed",
    "Western Sahara": "sovereignty disputed",
    "Falkland Islands": "sovereignty disputed",
}

# Worked examples in data/prompts/<dataset>/few_shot_*.txt: never dataset items.
FEW_SHOT_INPUTS: dict[str, frozenset[str]] = {
    "capitals": frozenset({"France", "Japan", "Kenya", "Canada", "Peru"}),
    "sentiment": frozenset({
        "The pasta was cold and the waiter ignored us all night.",
        "Honestly the best headphones I have owned, worth every penny.",
        "The plot dragged and I nearly fell asleep halfway through.",
        "Check-in took two minutes and the room had a lovely view.",
        "It broke after one week and support never answered my emails.",
    }),
    "dates": frozenset({"July 4, 1999", "12 January 2015", "Oct 30, 1987",
                        "The contract ends on February 9, 2024.", "Born 23 Aug 1961"}),
    "arithmetic": frozenset({"12 + 7", "45 - 18", "3 + 64", "90 - 9", "27 + 35"}),
}


def capitals() -> list[dict[str, str]]:
    """Country (or territory) -> capital, from the tables above, in table order."""
    rows = [{"input": c, "expected": cap, "kind": "country"} for c, cap in COUNTRY_CAPITALS]
    rows += [{"input": c, "expected": cap, "kind": "territory"} for c, cap in TERRITORY_CAPITALS]
    overlap = {r["input"] for r in rows} & (set(EXCLUDED_CAPITALS) | FEW_SHOT_INPUTS["capitals"])
    assert not overlap, f"excluded or example countries listed as items: {sorted(overlap)}"
    return rows


SENTIMENT_SUBJECTS: dict[str, tuple[str, ...]] = {
    "restaurant": ("The soup", "Our dinner", "The service", "The dessert", "This cafe",
                   "The steak", "The brunch menu", "The pizza"),
    "product": ("This laptop", "The blender", "My new phone", "The charger", "This backpack",
                "The vacuum cleaner", "This pair of running shoes", "The coffee maker"),
    "movie": ("The film", "The sequel", "The soundtrack", "The ending", "This documentary",
              "The lead actor", "The script", "The special effects"),
    "hotel": ("The room", "The hotel staff", "The breakfast buffet", "The pool", "The bed",
              "Our stay", "The front desk", "The location"),
}
SENTIMENT_PREDICATES: dict[str, tuple[str, ...]] = {
    "positive": ("was absolutely wonderful", "exceeded my expectations", "made my whole week",
                 "was a pleasant surprise", "is worth every cent", "was simply perfect",
                 "left me smiling", "could not have been better", "works like a charm",
                 "was a delight from start to finish", "impressed everyone in our group",
                 "is the best I have tried in years"),
    "negative": ("was a complete disappointment", "fell apart almost immediately",
                 "was a waste of money", "left a bad taste in my mouth", "was painfully slow",
                 "was not worth the price", "made me regret coming", "was awful",
                 "did not live up to the hype", "was sloppy and careless", "is the worst I have seen",
                 "broke my heart, and not in a good way"),
}
SENTIMENT_ENDINGS: dict[str, tuple[str, ...]] = {
    "positive": ("", " I will definitely be back.", " Highly recommended.",
                 " Five stars from me.", " Would buy again."),
    "negative": ("", " Never again.", " Avoid it.", " One star, and that is generous.",
                 " I want a refund."),
}


def sentiment(rng: random.Random) -> list[dict[str, str]]:
    """Short templated reviews, half positive and half negative, in shuffled order."""
    rows: dict[str, dict[str, str]] = {}
    for i in range(N_GENERATED):
        label = ("positive", "negative")[i % 2]
        while True:
            domain = rng.choice(sorted(SENTIMENT_SUBJECTS))
            text = (f"{rng.choice(SENTIMENT_SUBJECTS[domain])} "
                    f"{rng.choice(SENTIMENT_PREDICATES[label])}.{rng.choice(SENTIMENT_ENDINGS[label])}")
            if text not in rows and text not in FEW_SHOT_INPUTS["sentiment"]:
                break
        rows[text] = {"input": text, "expected": label, "domain": domain}
    out = list(rows.values())
    rng.shuffle(out)
    return out


DATE_STYLES: dict[str, str] = {
    "long": "{month} {day}, {year}",           # March 5, 2021
    "day_first": "{day} {month} {year}",       # 5 March 2021
    "abbrev": "{mon} {day}, {year}",           # Mar 5, 2021
    "ordinal": "{month} {ordinal}, {year}",    # March 5th, 2021
    "weekday": "{weekday}, {month} {day}, {year}",
}
DATE_SENTENCES = ("The meeting was moved to {date}.", "Invoice paid on {date}.",
                  "She started the new job on {date}.", "Shipped {date}, arriving soon.")


def _ordinal(n: int) -> str:
    suffix = "th" if 11 <= n % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def dates(rng: random.Random) -> list[dict[str, str]]:
    """English dates in five styles (a quarter inside a sentence) -> ISO 8601 YYYY-MM-DD."""
    start, span = date(1950, 1, 1), (date(2035, 12, 31) - date(1950, 1, 1)).days
    rows: dict[str, dict[str, str]] = {}
    while len(rows) < N_GENERATED:
        d = start + timedelta(days=rng.randrange(span + 1))
        style = rng.choice(sorted(DATE_STYLES))
        text = DATE_STYLES[style].format(
            month=calendar.month_name[d.month], mon=calendar.month_abbr[d.month], day=d.day,
            ordinal=_ordinal(d.day), year=d.year, weekday=calendar.day_name[d.weekday()])
        if rng.random() < 0.25:
            text, style = rng.choice(DATE_SENTENCES).format(date=text), f"{style}_in_sentence"
        if text not in rows and text not in FEW_SHOT_INPUTS["dates"]:
            rows[text] = {"input": text, "expected": d.isoformat(), "style": style}
    return list(rows.values())


def _operand(rng: random.Random) -> int:
    # Digit count first, so one-digit operands are half the draws rather than a tenth of them:
    # the set then spans easy to hard items instead of being almost all two-digit sums.  No zero:
    # in "a - 0" the first number is the answer, so a model that echoes the question would score.
    return rng.randint(1, 9) if rng.random() < 0.5 else rng.randint(10, 99)


def arithmetic(rng: random.Random) -> list[dict[str, str]]:
    """a + b or a - b with 1-2 digit operands; subtraction keeps the result non-negative."""
    rows: dict[str, dict[str, str]] = {}
    while len(rows) < N_GENERATED:
        a, b, op = _operand(rng), _operand(rng), rng.choice("+-")
        if op == "-" and b > a:
            a, b = b, a
        text = f"{a} {op} {b}"
        if text not in rows and text not in FEW_SHOT_INPUTS["arithmetic"]:
            rows[text] = {"input": text, "expected": str(a + b if op == "+" else a - b),
                          "operation": "addition" if op == "+" else "subtraction",
                          "digits": f"{len(str(a))}+{len(str(b))}"}
    return list(rows.values())


def write_jsonl(dataset: str, rows: list[dict[str, str]]) -> Path:
    """Write rows with ids `<dataset>-0001`... as UTF-8 JSONL, one object per line."""
    path = OUT_DIR / f"{dataset}.jsonl"
    with path.open("w", encoding="utf-8", newline="\n") as f:
        for i, row in enumerate(rows, start=1):
            f.write(json.dumps({"id": f"{dataset}-{i:04d}", **row}, ensure_ascii=False) + "\n")
    return path


def main() -> None:
    # One generator per dataset, so changing one dataset's recipe never reshuffles another.
    write_jsonl("capitals", capitals())
    write_jsonl("sentiment", sentiment(random.Random(f"{SEED}-sentiment")))
    write_jsonl("dates", dates(random.Random(f"{SEED}-dates")))
    write_jsonl("arithmetic", arithmetic(random.Random(f"{SEED}-arithmetic")))


if __name__ == "__main__":
    main()
