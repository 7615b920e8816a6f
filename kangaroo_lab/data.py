"""Prompts and questions: what the adapter is trained on and what decoding is measured with.

Everything here is a `Question`: the user turns of one conversation, with an id and a category.

* **Training prompts.** `training_prompts()` builds a few thousand user prompts from templates
  and content tables written in this module (no benchmark text is copied). They cover
  Spec-Bench's six kinds of work, so the adapter is trained on the same mix it is measured on:

  ===================  ==========================================================
  ``mt_bench``         chat: writing, roleplay, reasoning, maths, coding,
                       extraction, STEM, humanities; some with a second turn
  ``translation``      short texts between English and German/French/Spanish/Italian
  ``summarization``    summarise a 100-150 word article
  ``qa``               short factual questions
  ``math_reasoning``   grade-school word problems
  ``rag``              answer a question from one to three given passages
  ===================  ==========================================================

* **The mini-bench.** `load_minibench()` reads 60 hand-written questions (10 per category) in
  Spec-Bench's `question.jsonl` format, shipped as `assets/minibench.jsonl`. None of them
  appears among the training prompts, so speedups measured on it are not flattered by training.

* **Your own files.** `load_spec_bench`, `load_sharegpt` and `load_jsonl_prompts` read the
  common formats; `load_questions` picks one from the file's content; `write_questions`
  writes Spec-Bench's format.

Self-distillation -- letting the target model answer these prompts to make training
examples -- has its own section at the end of the module.
"""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

CATEGORIES = ("mt_bench", "translation", "summarization", "qa", "math_reasoning", "rag")
"""Spec-Bench's six kinds of work, used by the training prompts and the mini-bench alike."""

DEFAULT_NUM_PROMPTS = 3600
"""How many prompts `training_prompts()` returns by default: 600 per category."""


@dataclass(frozen=True)
class Question:
    """One conversation's user turns, in order.

    The model answers turn 1, then sees its own answer followed by turn 2, and so on.
    Spec-Bench's `mt_bench` questions have two turns; the other categories have one.
    `question_id` is an int in Spec-Bench files and a string such as "qa-00042" for
    generated training prompts.
    """

    question_id: int | str
    category: str
    turns: tuple[str, ...]


Prompt = Question
"""A training prompt is a `Question` with a string id such as "translation-00017"."""


# ---------------------------------------------------------------------------------------
# Training prompts
#
# Each category has a generator `(rng) -> turns` that draws one prompt at random from its
# templates and content tables. `training_prompts` calls them until it holds enough
# distinct prompts. Related values are drawn together (see `_Template`), so that a product
# keeps its own price and a person keeps their own pronouns.
# ---------------------------------------------------------------------------------------

Choice = str | dict[str, str]
Turns = tuple[str, ...]


@dataclass(frozen=True)
class _Template:
    """A text with {slots}, and the choices for each slot.

    A choice that is a dict fills several slots at once. `questions` are asked about the
    filled-in text (the retrieval prompts use them) and are formatted with the same values.
    """

    text: str
    slots: dict[str, tuple[Choice, ...]]
    questions: tuple[str, ...] = ()

    def draw(self, rng: random.Random) -> dict[str, str]:
        """Pick one choice per slot; return the values to `.format()` text and questions with."""
        values: dict[str, str] = {}
        for name, choices in self.slots.items():
            choice = rng.choice(choices)
            values.update(choice if isinstance(choice, dict) else {name: choice})
        return values

    def fill(self, rng: random.Random) -> str:
        """The text with freshly drawn values."""
        return self.text.format(**self.draw(rng))


def _numbers(low: int, high: int, step: int = 1) -> tuple[str, ...]:
    """Slot choices low, low + step, ..., high (inclusive), as strings."""
    return tuple(str(i) for i in range(low, high + 1, step))


def _person(name: str, pronoun: str) -> dict[str, str]:
    """Slot values for a person: {name}, {pron}, {Pron}, {obj}, {poss} and {Poss}."""
    obj, poss = {"she": ("her", "her"), "he": ("him", "his")}[pronoun]
    return {"name": name, "pron": pronoun, "Pron": pronoun.capitalize(), "obj": obj,
            "poss": poss, "Poss": poss.capitalize()}


_FIRST_NAMES = tuple(
    [_person(n, "she") for n in ("Amara", "Lucia", "Mei", "Priya", "Sofia", "Hannah", "Fatima",
                                 "Olga", "Chloe", "Yuki", "Nadia", "Grace", "Ines", "Zoe", "Leila")]
    + [_person(n, "he") for n in ("Tomás", "Kwame", "Oliver", "Ravi", "Jonas", "Mateo", "Hiroshi",
                                  "Samuel", "Ali", "Luca", "Daniel", "Omar", "Felix", "Arjun",
                                  "Ben")]
)
_FULL_NAMES = tuple(
    [_person(n, "she") for n in ("Margaret Hill", "Edda Marwick", "Ines Calloway", "Mira Solberg",
                                 "Clara Fenwright", "Beatrice Onyango", "Ruth Abernathy")]
    + [_person(n, "he") for n in ("Rufus Penhallow", "Anselm Greave", "Joachim Tell", "Walter Ng",
                                  "Desmond Achebe", "Piotr Zaleski", "Harold Quayle")]
)
_SURNAMED = ("Joan Barker", "Vikram Desai", "Elena Rossi", "Tom Whitlock", "Ayesha Malik",
             "Gareth Lloyd", "Nkechi Eze", "Sven Larsen", "Rosa Delgado", "Martin Kowalczyk")
_TOWNS = ("Millbrook", "Harwick", "Eastmere", "Tolland Cross", "Brackenford", "Westby", "Ashcombe",
          "Dunmore", "Kelsey Bridge", "Orchard Vale", "Fenwick", "Larkhill")
_CITIES = ("Aldmouth", "Kingsport", "Norhaven", "Bellcastle", "Tidewick")
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December")
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


# --- translation -----------------------------------------------------------------------

_SENTENCES: dict[str, dict[str, tuple[str, ...]]] = {
    "English": {
        "travel": ("The last train to the coast leaves at half past nine.",
                   "We missed our connection in Lyon and had to wait four hours.",
                   "Could you tell me where the nearest pharmacy is?",
                   "Our hotel room had a small balcony overlooking the harbour.",
                   "Please keep your passport with you at all times."),
        "food": ("My grandmother bakes bread every Sunday morning.",
                 "This soup needs a little more salt and some fresh pepper.",
                 "We would like a table for four near the window, please.",
                 "The restaurant around the corner closes early on Mondays.",
                 "I am allergic to peanuts, so I cannot eat this dessert."),
        "work": ("The meeting has been moved to Thursday afternoon.",
                 "I will send you the report before the end of the day.",
                 "Our team finished the project two weeks ahead of schedule.",
                 "She has worked as a nurse at the city hospital for ten years.",
                 "Please remember to switch off the lights when you leave the office."),
        "home": ("The neighbours' dog barks every time someone rings the bell.",
                 "We painted the kitchen yellow last weekend.",
                 "My brother is moving into a new apartment next month.",
                 "The heating in our flat stopped working during the night.",
                 "The children are playing in the garden while we cook dinner."),
        "weather": ("It has been raining since early this morning.",
                    "The lake freezes over almost every winter.",
                    "A strong wind knocked down two trees in the park.",
                    "In spring the hills behind the village are covered in flowers.",
                    "The forecast says it will be sunny but cold tomorrow."),
        "daily": ("I have been learning to play the guitar for three months.",
                  "The library is open until eight o'clock on weekdays.",
                  "He forgot his umbrella on the bus again.",
                  "My daughter wants to become a marine biologist.",
                  "We usually walk to school when the weather is nice."),
    },
    "German": {
        "travel": ("Der Zug nach München hat heute zwanzig Minuten Verspätung.",
                   "Entschuldigung, wie komme ich zum Bahnhof?",
                   "Wir haben ein kleines Zimmer mit Blick auf die Berge gebucht.",
                   "Am Flughafen mussten wir lange an der Passkontrolle warten."),
        "food": ("Zum Frühstück esse ich meistens ein Brötchen mit Käse.",
                 "Könnten wir bitte die Rechnung bekommen?",
                 "Meine Mutter kocht jeden Freitag eine große Gemüsesuppe.",
                 "Dieser Kuchen schmeckt nach Zimt und Äpfeln."),
        "work": ("Ich arbeite seit drei Jahren in einer kleinen Softwarefirma.",
                 "Die Besprechung beginnt morgen um neun Uhr.",
                 "Mein Kollege ist diese Woche krank und kann nicht kommen.",
                 "Bitte schicken Sie mir die Unterlagen bis Freitag."),
        "home": ("Unsere Wohnung liegt im dritten Stock und hat keinen Aufzug.",
                 "Am Wochenende räumen wir den Keller auf.",
                 "Die Katze schläft am liebsten auf dem warmen Fensterbrett.",
                 "Mein Bruder hat sich ein altes Fahrrad gekauft und repariert es selbst."),
        "weather": ("Heute Nacht soll es schneien.",
                    "Im Sommer gehen wir oft im See schwimmen.",
                    "Der Herbst ist meine liebste Jahreszeit, weil die Blätter so bunt sind.",
                    "Nach dem Gewitter war die Luft ganz frisch."),
        "daily": ("Ich lerne seit einem Jahr Spanisch, aber ich spreche es noch nicht gut.",
                  "Die Bibliothek ist sonntags geschlossen.",
                  "Kannst du mir bitte helfen, diesen Schrank zu tragen?",
                  "Wir treffen uns um sieben vor dem Kino."),
    },
    "French": {
        "travel": ("Le train pour Marseille part du quai numéro trois.",
                   "Excusez-moi, où se trouve l'arrêt de bus le plus proche ?",
                   "Nous avons loué une petite maison près de la plage pour l'été.",
                   "Mon vol a été annulé à cause du brouillard."),
        "food": ("Je voudrais un café et un croissant, s'il vous plaît.",
                 "Ma sœur prépare une tarte aux pommes pour le dîner.",
                 "Ce restaurant est fermé le dimanche soir.",
                 "Nous avons acheté du fromage et des fraises au marché."),
        "work": ("La réunion a été reportée à la semaine prochaine.",
                 "Mon père travaille dans une boulangerie depuis vingt ans.",
                 "Pouvez-vous m'envoyer le contrat avant lundi ?",
                 "Notre bureau déménage dans un nouveau bâtiment en septembre."),
        "home": ("Les enfants jouent dans le jardin pendant que nous préparons le repas.",
                 "Notre appartement est petit mais très lumineux.",
                 "Le chien du voisin aboie toute la nuit.",
                 "J'ai repeint la porte d'entrée en bleu."),
        "weather": ("Il pleut depuis ce matin et les rues sont glissantes.",
                    "En hiver, la montagne est couverte de neige.",
                    "Demain, il fera beau mais un peu froid.",
                    "Le vent a fait tomber plusieurs branches dans le parc."),
        "daily": ("J'apprends à jouer du piano depuis six mois.",
                  "La bibliothèque ferme à dix-huit heures le samedi.",
                  "Il a oublié son parapluie dans le métro.",
                  "Nous allons au cinéma ce soir avec des amis."),
    },
    "Spanish": {
        "travel": ("El autobús al aeropuerto sale cada media hora.",
                   "¿Sabe usted dónde está la estación de tren?",
                   "Pasamos una semana en un pueblo pequeño cerca del mar.",
                   "Perdí mi maleta en el aeropuerto de Madrid."),
        "food": ("Mi abuela hace la mejor paella de toda la familia.",
                 "¿Nos puede traer un poco más de pan, por favor?",
                 "Esta tienda vende fruta fresca todos los días.",
                 "Para la cena vamos a preparar una tortilla de patatas."),
        "work": ("Empiezo a trabajar a las ocho de la mañana.",
                 "La reunión con los clientes fue muy productiva.",
                 "Mi hermana es profesora en una escuela primaria.",
                 "Necesito terminar este informe antes del viernes."),
        "home": ("Nuestra casa tiene un patio con muchas plantas.",
                 "Los niños están haciendo los deberes en la cocina.",
                 "El gato duerme todo el día en el sofá.",
                 "Vamos a pintar el dormitorio de color verde."),
        "weather": ("Hace mucho calor en agosto en el sur de España.",
                    "Ayer llovió tanto que el río se desbordó.",
                    "En otoño los árboles del parque se vuelven amarillos.",
                    "Mañana va a hacer sol por la mañana y estará nublado por la tarde."),
        "daily": ("Estoy aprendiendo a tocar la guitarra con un amigo.",
                  "La farmacia abre a las nueve y cierra a las dos.",
                  "Olvidé las llaves en la oficina.",
                  "Los domingos solemos comer con mis padres."),
    },
    "Italian": {
        "travel": ("Il treno per Firenze parte tra dieci minuti.",
                   "Scusi, dov'è la fermata della metropolitana?",
                   "Abbiamo dormito in un piccolo albergo vicino al porto.",
                   "Il volo è arrivato con un'ora di ritardo."),
        "food": ("Mia nonna prepara la pasta fatta in casa ogni domenica.",
                 "Vorrei un tavolo per due, per favore.",
                 "Questo gelato al pistacchio è buonissimo.",
                 "Al mercato abbiamo comprato pomodori, basilico e formaggio."),
        "work": ("Lavoro in una biblioteca da cinque anni.",
                 "La riunione è stata spostata a giovedì pomeriggio.",
                 "Il mio collega è in ferie fino alla fine del mese.",
                 "Devo finire questa presentazione entro domani mattina."),
        "home": ("Il nostro appartamento ha un balcone pieno di fiori.",
                 "I bambini giocano in cortile dopo la scuola.",
                 "Il cane dei vicini abbaia ogni volta che passa qualcuno.",
                 "Stiamo cercando una casa più grande in campagna."),
        "weather": ("Oggi il cielo è nuvoloso e fa freddo.",
                    "D'estate andiamo spesso al lago a nuotare.",
                    "La neve ha bloccato la strada per il villaggio.",
                    "In primavera le colline sono verdi e piene di fiori."),
        "daily": ("Sto imparando il tedesco, ma è una lingua difficile.",
                  "La farmacia è chiusa il lunedì mattina.",
                  "Ho dimenticato il telefono a casa di un amico.",
                  "Stasera andiamo a teatro con i miei genitori."),
    },
}

_TRANSLATION_REQUESTS = (
    "Translate the following {source} text into {target}:\n\n{text}",
    "Translate {source} to {target}: {text}",
    'How would you say this in {target}? "{text}"',
    "Please translate this from {source} into {target}.\n{text}",
    "{text}\n\nTranslate the text above from {source} into {target}.",
    'I received this message in {source}: "{text}" What does it say in {target}?',
    "Give a natural-sounding {target} translation of this {source} text.\n\n{text}",
    "Can you translate this into {target} for me? {text}",
)


def _translation(rng: random.Random) -> Turns:
    """One or two sentences on one theme, from English into another language or back."""
    source = rng.choice(tuple(_SENTENCES))
    others = [language for language in _SENTENCES if language != "English"]
    target = rng.choice(others) if source == "English" else "English"
    theme = rng.choice(tuple(_SENTENCES[source]))
    text = " ".join(rng.sample(_SENTENCES[source][theme], rng.choice((1, 1, 2))))
    request = rng.choice(_TRANSLATION_REQUESTS)
    return (request.format(source=source, target=target, text=text),)


# --- summarization ---------------------------------------------------------------------

_STORIES = (
    _Template(
        "The town council of {town} voted {yes} to {no} on {weekday} evening to {plan}. The "
        "project is expected to cost about {cost}, part of which will come from a regional "
        "grant. Supporters said the change was long overdue, pointing out that {reason}. Not "
        "everyone is convinced. {critic}, who has run a {shop} on the high street for {years} "
        "years, warned that months of building work could keep customers away. The council has "
        "promised to publish a timetable by the end of {month} and to hold an open meeting where "
        "residents can ask questions. If all goes to plan, the first phase will be finished "
        "before next winter and the rest within two years.",
        {"town": _TOWNS,
         "votes": tuple({"yes": str(y), "no": str(n)} for y in range(5, 10) for n in range(1, 5)),
         "weekday": _WEEKDAYS[:5],
         "plan": ("build a covered cycle path along the river",
                  "turn the old bus depot into a public library",
                  "replace every street light with low-energy lamps",
                  "close the market square to cars at weekends",
                  "open a new health centre next to the station",
                  "repair and raise the flood wall along the canal"),
         "cost": ("two million pounds", "850,000 pounds", "1.4 million euros", "600,000 euros",
                  "three million dollars"),
         "reason": ("the old building has stood empty for a decade",
                    "traffic on the main road has doubled in ten years",
                    "residents have been asking for it since 2015",
                    "the current facilities are far too small for a growing population"),
         "critic": _SURNAMED,
         "shop": ("bakery", "bookshop", "hardware store", "café", "flower shop", "shoe shop"),
         "years": _numbers(5, 30),
         "month": _MONTHS}),
    _Template(
        "A study published this week by researchers at {university} suggests that {finding}. "
        "The team followed {count} {subjects} for {duration} and compared those who {group} with "
        "those who did not. {lead}, who led the work, called the results {quality}, but stressed "
        "that the study shows a link rather than proof of cause and effect. Other scientists "
        "welcomed the findings while noting that {caveat}. The researchers now plan a larger "
        "trial and hope to report in {year}. In the meantime, they say, the results are a "
        "reminder that small daily habits can add up over the years.",
        {"university": ("the University of Aldmouth", "Kingsport Medical School",
                        "the Northfield Institute of Health", "Bellcastle University"),
         "study": (
             {"finding": "a ten-minute walk after dinner may help people sleep better",
              "subjects": "adults", "group": "walked after their evening meal"},
             {"finding": "students remember more of what they read on paper than on screens",
              "subjects": "secondary-school students",
              "group": "studied mostly from printed books"},
             {"finding": "children who help to cook at home eat more vegetables",
              "subjects": "families with young children", "group": "regularly cooked together"},
             {"finding": "office workers who sit near a window report fewer headaches",
              "subjects": "office workers", "group": "had a desk next to a window"},
             {"finding": "learning a musical instrument late in life may help keep memory sharp",
              "subjects": "people over sixty", "group": "took weekly music lessons"},
             {"finding": "gardening for a few hours a week is linked to lower stress",
              "subjects": "city residents", "group": "kept an allotment or a garden"},
             {"finding": "people who eat breakfast with others snack less during the day",
              "subjects": "young adults", "group": "usually ate breakfast with family or friends"}),
         "count": ("240", "620", "1,100", "3,500", "8,000"),
         "duration": ("two years", "eighteen months", "five years", "a full school year"),
         "lead": ("Dr Hana Okoro", "Professor Liam Achterberg", "Dr Sunita Rao",
                  "Dr Pablo Ferreira", "Professor Ingrid Vale"),
         "quality": ("encouraging", "surprisingly clear", "modest but consistent", "striking"),
         "caveat": ("most participants came from a single city",
                    "people reported their own habits, which can be unreliable",
                    "people with healthy habits may differ in many other ways",
                    "the effect was small for people over seventy"),
         "year": _numbers(2026, 2030)}),
    _Template(
        "{company}, a {size} firm based in {city}, announced on {weekday} that it will {move}. "
        "The decision follows {cause}. In a letter to staff, chief executive {ceo} said the "
        "change would {benefit} and promised that no jobs would be lost. The company employs "
        "about {staff} people, most of them in {dept}. Analysts called the move sensible but "
        "risky, warning that {risk}. Customers should notice the difference from {month}, when "
        "{visible}. Further details are expected at the company's annual meeting later this year.",
        {"company": ("Harbourline Foods", "Pennant Bicycles", "Greystone Paper Co.",
                     "Lumen Home Goods", "Kitely Travel", "Broadleaf Furniture"),
         "size": ("family-owned", "mid-sized", "fast-growing", "hundred-year-old"),
         "city": _CITIES,
         "weekday": _WEEKDAYS[:5],
         "change": (
             {"move": "switch its whole delivery fleet to electric vans",
              "cause": "a sharp rise in fuel prices last year",
              "visible": "the first electric vans appear on local roads"},
             {"move": "move all office staff to a four-day week",
              "cause": "a six-month trial that staff rated highly",
              "visible": "customer service lines close on Fridays"},
             {"move": "stop using plastic in all of its packaging",
              "cause": "years of complaints from customers about waste",
              "visible": "paper-based packaging arrives in shops"},
             {"move": "open its first shop outside the country",
              "cause": "strong online sales in neighbouring markets",
              "visible": "the new shop opens its doors"},
             {"move": "offer free repairs on every product for five years",
              "cause": "a new law on the right to repair",
              "visible": "repair vouchers are included with each purchase"},
             {"move": "close its oldest factory and move production to a new site",
              "cause": "rising maintenance costs at the old building",
              "visible": "the first products from the new site reach the shelves"}),
         "ceo": _SURNAMED,
         "benefit": ("make the business fit for the next twenty years",
                     "put customers first", "cut costs and emissions at the same time",
                     "make the company a better place to work"),
         "staff": ("140", "600", "1,200", "3,000"),
         "dept": ("its main factory", "customer service", "its warehouses", "the design studio"),
         "risk": ("costs could rise before they fall", "rivals may not follow",
                  "the plan depends on suppliers keeping up",
                  "customers may take time to get used to it"),
         "month": _MONTHS}),
    _Template(
        "More than {crowd} people visited {town} last weekend for the {edition} {festival}. The "
        "two-day event, run entirely by volunteers, featured {attraction}, a {market} and "
        "{evening}. Organiser {organiser} said it was the busiest festival yet, helped by "
        "{helper}. Local businesses also had a good weekend: one café owner said she had "
        "{anecdote}. There were some problems, however. {problem}, and the organisers have "
        "promised to {fix} next year. Money raised from ticket sales will go to {cause}.",
        {"crowd": ("3,000", "8,500", "12,000", "20,000"),
         "town": _TOWNS,
         "edition": ("first", "fifth", "tenth", "twenty-first", "fortieth"),
         "festival": ("Food and Music Festival", "Kite and Sky Festival", "Summer Folk Weekend",
                      "Autumn Lantern Parade", "Street Theatre Festival"),
         "attraction": ("a parade of giant puppets", "live music on two stages",
                        "cooking demonstrations by local chefs", "a sand-sculpture competition"),
         "market": ("craft market", "farmers' market", "second-hand book market"),
         "evening": ("fireworks over the harbour on Saturday night",
                     "an open-air film on Sunday evening", "a lantern walk along the river",
                     "a late-night dance in the square"),
         "organiser": _SURNAMED,
         "helper": ("two days of warm sunshine", "dry weather after a wet week",
                    "a new shuttle bus from the station"),
         "anecdote": ("run out of scones by eleven o'clock",
                      "sold more coffee in two days than in a normal month",
                      "hired her two nephews to help serve"),
         "trouble": (
             {"problem": "Queues for the car park stretched back more than a kilometre on "
                         "Saturday morning",
              "fix": "add a second car park and more shuttle buses"},
             {"problem": "Several visitors complained that there were too few toilets",
              "fix": "double the number of toilets"},
             {"problem": "Some neighbours were unhappy about noise late on Saturday night",
              "fix": "end the music an hour earlier"},
             {"problem": "A sudden shower on Sunday afternoon sent crowds running for shelter",
              "fix": "put up more covered seating"}),
         "cause": ("the local hospice", "repairs to the village hall", "a new playground",
                   "the lifeboat station", "music lessons for local children")}),
    _Template(
        "{home} came from behind to beat {away} 2-1 on {weekday}, with the winning goal coming "
        "in the final minutes. {away} started strongly and went ahead through {scorer} after "
        "{early} minutes. {home} struggled to create chances before half-time, and manager "
        "{coach} made two changes at the break. The substitutes made an immediate difference: "
        "{sub} equalised {soon} minutes into the second half and then set up {winner} for the "
        "winner with {left} minutes left. The result lifts {home} to {position} place in the "
        "table. 'I asked the players for more courage, and they gave it to me,' {coach} said "
        "afterwards. {away} play their next match at home {next_match}.",
        {"teams": tuple({"home": a, "away": b} for a, b in itertools.permutations(
             ("Harwick Rovers", "Eastmere United", "Brackenford Town", "Westby Athletic",
              "Dunmore City", "Fenwick Albion"), 2)),
         "weekday": ("Saturday", "Sunday", "Tuesday", "Wednesday"),
         "scorer": ("Diego Ortiz", "Callum Reid", "Yusuf Demir", "Mikkel Holm"),
         "early": _numbers(6, 35),
         "coach": ("Anna Brandt", "Paul Mensah", "Ricardo Lima", "Fiona Gallagher"),
         "sub": ("Theo Marsh", "Kenji Sato", "Emeka Obi", "Lars Berg"),
         "soon": _numbers(3, 15),
         "winner": ("Jamie Cole", "Andrés Vidal", "Sami Haddad", "Owen Price"),
         "left": _numbers(2, 8),
         "position": ("top", "second", "fourth", "sixth"),
         "next_match": ("on Wednesday", "next Saturday", "in ten days' time")}),
    _Template(
        "When {name} retired from {poss} job as {old_job} at the age of {age}, {pron} did not "
        "expect to start a second career. But after {trigger}, {pron} began {hobby} in {poss} "
        "garage. What began as a way to pass the time has grown: {pron} now {scale}, and {poss} "
        "work has been shown at {venue}. '{quote},' {name} says. {Pron} spends about {hours} "
        "hours a day on it and has taught the basics to {students} teenagers from the "
        "neighbourhood. Next year {pron} hopes to {plan}.",
        {"person": _FULL_NAMES,
         "old_job": ("a bus driver", "a primary-school teacher", "an accountant", "a nurse",
                     "an engineer at the power station", "a postal worker"),
         "age": _numbers(58, 70),
         "trigger": ("a long illness", "a holiday spent watching craftspeople at work",
                     "finding an old toolbox in the attic",
                     "a short evening course at the local college"),
         "craft": (
             {"hobby": "carving wooden birds",
              "scale": "sells carvings to collectors in three countries"},
             {"hobby": "restoring old radios",
              "scale": "repairs radios for museums and film studios"},
             {"hobby": "making stained-glass panels",
              "scale": "takes commissions from churches and cafés"},
             {"hobby": "building model ships",
              "scale": "has finished more than forty ships"},
             {"hobby": "weaving rugs on a home-made loom",
              "scale": "sells rugs at markets across the region"},
             {"hobby": "baking sourdough bread",
              "scale": "supplies three local cafés every morning"}),
         "venue": ("the town library", "a gallery in Kingsport", "the regional craft fair",
                   "a museum exhibition on local crafts"),
         "quote": ("It keeps my hands busy and my mind calm",
                   "I wish I had started forty years ago",
                   "Every piece teaches me something new", "Mistakes are just the first draft"),
         "hours": _numbers(2, 6),
         "students": _numbers(3, 20),
         "plan": ("open a small workshop on the high street", "write a book for beginners",
                  "enter an international competition",
                  "start a weekly class at the community centre")}),
    _Template(
        "I have been using the {product} for {weeks} weeks, mostly for {use}. The first thing "
        "you notice is {first}. Setting it up took about {minutes} minutes, and the instructions "
        "were {instructions}. In daily use, {good}. It is not perfect, though: {bad}. At {price} "
        "it costs more than most rivals, but {verdict}. If you {audience}, it is easy to "
        "recommend; otherwise, you may want to wait for the next model.",
        {"item": (
             {"product": "Brevo 3 coffee grinder", "use": "my morning espresso",
              "first": "how quiet it is compared with older grinders",
              "good": "the grind is even and the hopper holds a week's worth of beans",
              "bad": "the plastic lid feels cheap and already has a small crack",
              "audience": "drink coffee every day"},
             {"product": "Tallis robot vacuum", "use": "a small flat with two cats",
              "first": "how low it is, which lets it clean under the sofa",
              "good": "it picks up cat hair well and rarely gets stuck",
              "bad": "the app is slow and sometimes forgets the map of the flat",
              "audience": "have pets and hard floors"},
             {"product": "Marlin trail running shoes", "use": "muddy forest runs",
              "first": "the deep grip on the soles",
              "good": "they stay comfortable even after two hours",
              "bad": "they take a long time to dry after a wet run",
              "audience": "run off-road several times a week"},
             {"product": "Pagewell e-reader", "use": "reading on the train",
              "first": "the warm, paper-like screen",
              "good": "the battery lasts for weeks and pages turn instantly",
              "bad": "the built-in shop is hard to search and there are no page buttons",
              "audience": "read a book or more every month"},
             {"product": "Cumulus rain jacket", "use": "walking the dog in all weathers",
              "first": "how light it is for a waterproof jacket",
              "good": "it has kept me dry through several heavy storms",
              "bad": "the hood is too small to wear over a hat",
              "audience": "spend a lot of time outdoors"},
             {"product": "Solace desk lamp", "use": "late evenings at my writing desk",
              "first": "the soft, even light with no glare",
              "good": "brightness and colour change with a single touch",
              "bad": "the base takes up more desk space than I expected",
              "audience": "work or study at home in the evenings"}),
         "weeks": ("two", "three", "six", "eight"),
         "minutes": _numbers(5, 30, 5),
         "instructions": ("clear and short", "confusing in places", "only available online",
                          "better than usual"),
         "price": ("89 pounds", "149 dollars", "120 euros", "65 dollars"),
         "verdict": ("the quality mostly justifies the price", "you do get what you pay for",
                     "a sale would make it a much easier choice")}),
    _Template(
        "The {building} in {town} was built in {built} as {original}. For most of its history "
        "it {history}. After {closure}, it stood empty for {empty} years and was close to "
        "collapse by the time a group of residents, led by {leader}, began raising money to "
        "save it. Restoration took {restore} years and cost around {cost}, much of it paid for "
        "by small donations. Volunteers did a lot of the work themselves, from clearing rubble "
        "to repairing windows. Today the building houses {now} and welcomes about {visitors} "
        "visitors a year. A small exhibition on the ground floor tells the story of its rescue.",
        {"origin": (
             {"building": "old corn exchange", "original": "a market hall for local farmers",
              "history": "was the busiest place in town on market days"},
             {"building": "Victoria Baths", "original": "a public bath house",
              "history": "taught generations of children to swim"},
             {"building": "Mill House", "original": "a textile mill",
              "history": "employed hundreds of workers from the surrounding villages"},
             {"building": "old grammar school",
              "original": "a school for the children of railway workers",
              "history": "was the centre of community life"},
             {"building": "Tower Cinema", "original": "a cinema and dance hall",
              "history": "was where couples in town went on their first date"}),
         "town": _TOWNS,
         "built": _numbers(1790, 1935, 5),
         "closure": ("the last owners went bankrupt", "a fire damaged the roof",
                     "a new building replaced it", "the council could no longer afford repairs"),
         "empty": _numbers(8, 40),
         "leader": _SURNAMED,
         "restore": _numbers(2, 9),
         "cost": ("1.2 million pounds", "900,000 euros", "three million dollars", "450,000 pounds"),
         "now": ("a café, a library and a community workshop",
                 "artists' studios and a weekly market",
                 "a small museum and a music school", "a cinema run by volunteers",
                 "offices for local charities and a rooftop garden"),
         "visitors": ("20,000", "45,000", "80,000", "150,000")}),
)

_SUMMARY_REQUESTS = (
    "Summarize the following article in two sentences.\n\n{text}",
    "Summarize the following text in three sentences.\n\n{text}",
    "Write a short summary of this text:\n\n{text}",
    "{text}\n\nSummarize the passage above in one paragraph.",
    "Read the passage and list its three most important points as bullet points.\n\n{text}",
    "Give a one-sentence summary of the following:\n\n{text}",
    "Give me a TL;DR of this:\n\n{text}",
    "Summarize this for a busy reader in no more than 40 words:\n\n{text}",
    "Here is a news story:\n\n{text}\n\nWhat is it about? Answer in two or three sentences.",
    "Write a headline and a two-sentence summary for this article.\n\n{text}",
    "Explain the main point of this text to a twelve-year-old.\n\n{text}",
)


def _summarization(rng: random.Random) -> Turns:
    """A freshly filled article or story, with a request to summarise it."""
    text = rng.choice(_STORIES).fill(rng)
    return (rng.choice(_SUMMARY_REQUESTS).format(text=text),)


# --- qa --------------------------------------------------------------------------------

_COUNTRIES = ("France", "Japan", "Brazil", "Kenya", "Canada", "Australia", "Egypt", "India",
              "Norway", "Mexico", "Argentina", "Vietnam", "Italy", "Spain", "Germany", "Peru",
              "Thailand", "Morocco", "Sweden", "Poland", "Greece", "Turkey", "Chile", "Nigeria",
              "Ireland", "Portugal", "New Zealand", "South Korea", "Indonesia", "Ghana",
              "Finland", "Colombia", "Hungary", "Iceland", "Nepal", "Cuba", "Austria",
              "Switzerland", "the Philippines", "Denmark")
_ANIMALS = (("elephant", "elephants"), ("dolphin", "dolphins"), ("penguin", "penguins"),
            ("honeybee", "honeybees"), ("octopus", "octopuses"), ("giraffe", "giraffes"),
            ("kangaroo", "kangaroos"), ("barn owl", "barn owls"), ("camel", "camels"),
            ("polar bear", "polar bears"), ("salmon", "salmon"), ("cheetah", "cheetahs"),
            ("tortoise", "tortoises"), ("bat", "bats"), ("tree frog", "tree frogs"),
            ("koala", "koalas"), ("wolf", "wolves"), ("hummingbird", "hummingbirds"),
            ("great white shark", "great white sharks"), ("gorilla", "gorillas"),
            ("leafcutter ant", "leafcutter ants"), ("giant panda", "giant pandas"),
            ("crocodile", "crocodiles"), ("flamingo", "flamingos"), ("beaver", "beavers"),
            ("red squirrel", "red squirrels"), ("blue whale", "blue whales"),
            ("hedgehog", "hedgehogs"), ("parrot", "parrots"), ("horse", "horses"))
_ELEMENTS = ("hydrogen", "helium", "carbon", "nitrogen", "oxygen", "sodium", "iron", "copper",
             "silver", "gold", "aluminium", "silicon", "calcium", "potassium", "zinc", "lead",
             "mercury", "neon", "chlorine", "uranium")
_CONCEPTS = ("photosynthesis", "inflation", "gravity", "a black hole", "DNA", "the water cycle",
             "democracy", "an algorithm", "a vaccine", "the greenhouse effect",
             "plate tectonics", "a recession", "the internet", "machine learning",
             "a solar eclipse", "evaporation", "compound interest", "a rainbow", "erosion",
             "a volcano", "an atom", "an ecosystem", "a tsunami", "the immune system",
             "a budget deficit", "renewable energy", "a solar panel", "a metaphor", "a haiku",
             "the stock market", "a carbon footprint", "a password manager", "an earthquake",
             "the tides", "friction", "a food chain", "a calorie", "a fossil", "a comet",
             "electric current")
_ORGANS = ("heart", "liver", "lungs", "kidneys", "brain", "skin", "stomach", "pancreas",
           "spleen", "small intestine")
_INVENTIONS = ("telephone", "printing press", "light bulb", "steam engine", "bicycle",
               "aeroplane", "radio", "television", "computer mouse", "World Wide Web",
               "refrigerator", "camera", "microscope", "magnetic compass", "typewriter")
_UNITS = (("centimetres", "metre"), ("grams", "kilogram"), ("minutes", "day"),
          ("seconds", "hour"), ("days", "leap year"), ("ounces", "pound"), ("feet", "mile"),
          ("millilitres", "litre"), ("weeks", "year"), ("inches", "foot"))
_PLANETS = ("Mercury", "Venus", "Earth", "Mars", "Jupiter", "Saturn", "Uranus", "Neptune")

_QA_SETS: tuple[tuple[tuple, tuple[str, ...]], ...] = (
    (_COUNTRIES, ("What is the capital of {0}?", "What currency is used in {0}?",
                  "On which continent is {0}?", "Which languages are spoken in {0}?",
                  "Name a traditional dish from {0}.", "Roughly how many people live in {0}?")),
    (_ANIMALS, ("What does the {0} eat?", "Where do {1} live in the wild?",
                "How long does the {0} usually live?", "How do {1} communicate with each other?",
                "Is the {0} a mammal, a bird, a reptile, a fish, an amphibian or an insect?",
                "Tell me one surprising fact about {1}.")),
    (_ELEMENTS, ("What is the chemical symbol for {0}?", "What is the atomic number of {0}?",
                 "Is {0} a metal or a non-metal?", "What is {0} commonly used for?")),
    (_CONCEPTS, ("What is {0}?", "Explain {0} in simple words.",
                 "Can you give me a short definition of {0}?")),
    (_ORGANS, ("What is the main job of the {0} in the human body?",
               "How can I keep my {0} healthy?")),
    (_INVENTIONS, ("Who invented the {0}?", "When was the {0} invented?",
                   "How did the {0} change everyday life?")),
    (_UNITS, ("How many {0} are there in a {1}?",)),
    (_PLANETS, ("How many moons does {0} have?", "How long is a year on {0}?",
                "What is the surface of {0} like?")),
    (tuple(itertools.combinations(_PLANETS, 2)), ("Which is larger, {0} or {1}?",)),
)

_QA_STYLES = ("{q}", "Quick question: {q}", "{q} Please answer in one or two sentences.",
              "I was wondering: {q}", "{q} Keep it short.")


def _qa(rng: random.Random) -> Turns:
    """A short factual question about a country, animal, element, idea, organ, ..."""
    subjects, questions = rng.choice(_QA_SETS)
    subject = rng.choice(subjects)
    words = subject if isinstance(subject, tuple) else (subject,)
    question = rng.choice(questions).format(*words)
    return (rng.choice(_QA_STYLES).format(q=question),)


# --- math_reasoning --------------------------------------------------------------------

_THINGS = ("marbles", "stickers", "apples", "seashells", "stamps", "trading cards", "pencils",
           "cookies", "toy cars", "beads", "postcards", "oranges")
_SAVINGS_GOALS = ("bicycle", "skateboard", "guitar", "tent", "pair of headphones", "video game",
                  "telescope", "pair of roller skates")

_WORD_PROBLEMS = (
    "{name} has {start} {things}. {Pron} gives {given} of them to {friend} and then buys {more} "
    "more. How many {things} does {name} have now?",
    "A box holds {each} {things}. {name} fills {groups} boxes and has {small} {things} left "
    "over. How many {things} did {name} have to begin with?",
    "{name} buys {groups} notebooks that cost ${price} each and pays with a ${bill} note. How "
    "much change does {pron} get?",
    "{name} reads {each} pages every day. How many days will it take {obj} to finish a book "
    "with {pages} pages?",
    "A train travels at {speed} kilometres per hour. How far does it go in {hours} and a half "
    "hours?",
    "{name} and {friend} share {ratio_total} {things} so that {friend} gets {small} times as "
    "many as {name}. How many does each of them get?",
    "A jacket costs ${tag}. In a sale it is {percent}% off. What is the sale price?",
    "{name} walks for {minutes} minutes every weekday and twice as long on Saturday and "
    "Sunday. How many minutes does {pron} walk in a week?",
    "There are {club} children in a school club, and {percent}% of them play chess. How many "
    "children in the club do not play chess?",
    "A vegetable garden is {length} metres long and {width} metres wide. {name} wants to put a "
    "fence all the way around it. How many metres of fence does {pron} need?",
    "A room is {length} metres long and {width} metres wide. How many square metres of carpet "
    "are needed to cover the floor?",
    "{name} saves ${price} every week. How many weeks will it take {obj} to save for a "
    "{goal_item} that costs ${goal}?",
    "A bakery makes {start} muffins in the morning and {more} in the afternoon. By closing "
    "time, {small} are left. How many muffins did the bakery sell?",
    "{name} is {age} years old. {friend} is {small} years older. How old will {friend} be in "
    "{later} years?",
    "A recipe uses {each} eggs to make {batch} pancakes. How many eggs does {name} need to "
    "make {pancakes} pancakes?",
    "A bus leaves at {clock} and the journey takes {long_minutes} minutes. At what time does "
    "the bus arrive?",
    "{name} had ${wallet}. {Pron} spent a quarter of it on a book and ${price} on lunch. How "
    "much money does {pron} have left?",
)

_MATH_SUFFIXES = ("", " Explain your reasoning step by step.", " Show your work.",
                  "\nGive the final answer as a number at the end.", " Think it through carefully.")


def _math_values(rng: random.Random) -> dict[str, object]:
    """Numbers, names and objects for one word problem, drawn so every template has an answer."""
    person, friend = rng.sample(_FIRST_NAMES, 2)
    start, each, groups, small = (rng.randint(20, 90), rng.randint(3, 12), rng.randint(3, 12),
                                  rng.randint(2, 6))
    price, batch = rng.randint(2, 15), rng.choice((4, 6, 8, 10))
    start_hour, start_minute = rng.randint(6, 10), 5 * rng.randint(0, 11)
    return {
        **person, "friend": friend["name"], "things": rng.choice(_THINGS),
        "start": start, "given": rng.randint(2, start - 5), "more": rng.randint(3, 30),
        "each": each, "groups": groups, "small": small, "price": price,
        "bill": next(b for b in (20, 50, 100, 200) if b > groups * price),
        "pages": each * rng.randint(10, 40), "speed": 5 * rng.randint(6, 24),
        "hours": rng.randint(1, 5), "ratio_total": rng.randint(3, 15) * (small + 1),
        "tag": 10 * rng.randint(2, 12), "percent": rng.choice((10, 20, 25, 50)),
        "minutes": rng.randint(15, 55), "club": 20 * rng.randint(1, 6),
        "length": rng.randint(4, 30), "width": rng.randint(2, 15),
        "goal_item": rng.choice(_SAVINGS_GOALS), "goal": price * rng.randint(6, 20),
        "age": rng.randint(6, 40), "later": rng.randint(2, 15), "batch": batch,
        "pancakes": batch * rng.randint(2, 6), "clock": f"{start_hour}:{start_minute:02d}",
        "long_minutes": rng.randint(25, 140), "wallet": 4 * rng.randint(10, 30),
    }


def _math_reasoning(rng: random.Random) -> Turns:
    """A grade-school word problem with fresh names, objects and numbers."""
    problem = rng.choice(_WORD_PROBLEMS).format(**_math_values(rng))
    return (problem + rng.choice(_MATH_SUFFIXES),)


# --- rag -------------------------------------------------------------------------------

_RAG_TOWNS = ("Havenmoor", "Calder Ridge", "Wrenfield", "Stonebury", "Pellworth", "Marrowdale",
              "Quillby", "Thornwick", "Elmsford Green", "Brindle Hollow")

_RAG_DOCUMENTS = (
    _Template(
        "{town} is a {size} town on the {river}, founded in {founded}. About {population} people "
        "live there today. It is best known for its {speciality}, and every {month} it hosts "
        "the {festival}, which draws visitors from across the region. The nearest airport is in "
        "{city}, {km} kilometres away. The stone bridge in the town centre was rebuilt in "
        "{rebuilt} after {damage}.",
        {"town": _RAG_TOWNS,
         "size": ("small", "quiet", "busy market", "hillside", "former mining"),
         "river": ("River Tamsin", "River Oake", "Lune Water", "River Brenn", "Silverburn"),
         "founded": _numbers(1120, 1890, 7),
         "population": ("950", "2,900", "4,200", "7,800", "12,500", "18,000"),
         "speciality": ("blue cheese", "hand-made pottery", "apple cider", "wooden toys",
                        "rose gardens", "lace", "smoked fish"),
         "month": _MONTHS,
         "festival": ("Lantern Festival", "Harvest Fair", "Kite Weekend", "Folk Music Days",
                      "Bread and Cheese Market", "Boat Parade"),
         "city": _CITIES,
         "km": _numbers(12, 95),
         "rebuilt": _numbers(1950, 2015),
         "damage": ("a flood", "a fire", "a lorry crashed into it", "a winter storm")},
        ("When was {town} founded?", "Which festival does {town} host, and in which month?",
         "How far is {town} from the nearest airport?", "What is {town} best known for?",
         "Why was the bridge in {town} rebuilt, and when?", "How many people live in {town}?")),
    _Template(
        "The {brand} {model} is a {kind} released in {year}. It weighs {weight} grams, and its "
        "battery lasts up to {hours} hours on a single charge. {water}. The {model} comes in "
        "{colours} and costs {price}. Every unit includes a {warranty}-year warranty, which can "
        "be extended for a small fee.",
        {"brand": ("Nordlys", "Kestrel", "Vantio", "Orbel", "Lumio", "Fieldcraft"),
         "model": ("Aria 2", "Pulse X", "Trek 5", "Nova Mini", "Echo S", "Drift"),
         "kind": ("fitness watch", "wireless speaker", "e-reader", "pair of wireless earbuds",
                  "handheld GPS unit", "camping lantern"),
         "year": _numbers(2019, 2024),
         "weight": ("48", "95", "180", "210", "320", "540"),
         "hours": ("8", "12", "20", "36", "60"),
         "water": ("It is water-resistant to 50 metres",
                   "It survives a splash of rain but should not be submerged",
                   "It is waterproof for up to 30 minutes at a depth of one metre",
                   "It is not water-resistant, so keep it dry"),
         "colours": ("black and silver", "forest green, sand and charcoal", "white only",
                     "red, blue and graphite"),
         "price": ("79 euros", "129 dollars", "59 pounds", "249 dollars", "199 euros"),
         "warranty": ("one", "two", "three")},
        ("How long does the battery of the {brand} {model} last?",
         "How much does the {brand} {model} cost?", "Which colours is the {model} available in?",
         "Can I take the {brand} {model} swimming?",
         "How long is the warranty on the {model}, and can it be extended?",
         "How heavy is the {brand} {model}?")),
    _Template(
        "Staff handbook, section {section}. Employees of {company} may work from home up to "
        "{days} per week if their manager agrees. Requests to work remotely for longer "
        "periods must be sent to {team} at least {notice} weeks in advance. Travel expenses "
        "under {limit} can be claimed without a receipt; larger amounts need one. New employees "
        "receive {leave} days of paid leave per year, plus one extra day for every {every} years "
        "of service.",
        {"section": ("3.1", "4.2", "5", "7.4", "9"),
         "company": ("Brightwater Logistics", "Ferncastle Insurance", "Tidewell Software",
                     "Oakridge Foods", "Copperline Energy", "Silverleaf Publishing"),
         "days": ("one day", "two days", "three days"),
         "team": ("the HR team", "the people operations office", "the office manager"),
         "notice": _numbers(2, 6),
         "limit": ("25 euros", "30 pounds", "40 dollars", "50 euros"),
         "leave": _numbers(20, 30),
         "every": _numbers(2, 5)},
        ("How many days a week can employees of {company} work from home?",
         "How much paid leave does a new employee at {company} get?",
         "Do employees of {company} need a receipt for every travel expense?",
         "How far in advance must a request for longer remote work be made at {company}?",
         "How does paid leave at {company} change with years of service?")),
    _Template(
        "{name} ({born}-{died}) was a {job} who grew up in {hometown}. After studying at "
        "{school}, {pron} spent many years working at {workplace}. {Pron} is best remembered for "
        "{work}, completed in {done}. In later life {pron} {later}. {Poss} notebooks and letters "
        "are kept today at the {archive}.",
        {"person": _FULL_NAMES,
         # born 1820-1910, best work at age 30-49, died at age 58-87
         "dates": tuple({"born": str(b), "done": str(b + 30 + 5 * i % 20),
                         "died": str(b + 58 + 7 * i % 30)}
                        for i, b in enumerate(range(1820, 1911, 6))),
         "job": ("bridge engineer", "botanist", "mapmaker", "violin maker", "astronomer",
                 "architect", "photographer", "printer and bookbinder"),
         "hometown": _RAG_TOWNS,
         "school": ("the Northfield Technical Institute", "the University of Aldmouth",
                    "the Kingsport School of Design",
                    "a village school and later at night classes"),
         "workplace": ("a shipyard", "the city observatory", "a botanical garden",
                       "a printing house", "the railway company's drawing office"),
         "work": ("a detailed map of the northern coast",
                  "a catalogue of over two thousand alpine plants",
                  "a lighthouse design that could withstand winter storms",
                  "a set of photographs of life in fishing villages",
                  "a star atlas that sailors used for decades"),
         "later": ("taught evening classes for young apprentices",
                   "wrote a popular book about walking in the hills",
                   "moved to the coast and took up painting",
                   "campaigned for free public libraries"),
         "archive": ("Stonebury Town Museum", "National Library of Science",
                     "Aldmouth City Archive", "Kingsport Maritime Museum")},
        ("Where did {name} grow up?", "What is {name} best remembered for?",
         "In what year was {name}'s best-known work completed?",
         "Where are {name}'s notebooks kept today?", "What did {name} do in later life?",
         "How old was {name} at the time of {poss} death?")),
    _Template(
        "The {club} will hold its {event} on {weekday} {day} {month} at {venue}. Doors open at "
        "{time}, and the programme starts half an hour later. Tickets cost {price} for adults; "
        "children under {age} go free. Parking at the venue is limited, so visitors are asked "
        "to come by bus (line {bus}) or by bicycle. If the weather is bad, the event will move "
        "to {backup}.",
        {"club": ("Havenmoor Gardening Club", "Riverside Chess Society", "Wrenfield Choir",
                  "Northside Astronomy Group", "Old Town Cycling Club",
                  "Pellworth Photography Circle"),
         "event": ("annual summer fair", "open evening", "charity quiz night",
                   "anniversary celebration", "members' exhibition", "family day"),
         "weekday": _WEEKDAYS,
         "day": _numbers(1, 28),
         "month": _MONTHS,
         "venue": ("the community hall on Mill Lane", "St Bride's School playing field",
                   "the old tram depot", "Harbour Park", "the public library garden"),
         "time": ("10 a.m.", "2 p.m.", "6.30 p.m.", "7 p.m."),
         "price": ("5 pounds", "8 euros", "10 dollars", "3.50 pounds"),
         "age": _numbers(5, 14),
         "bus": _numbers(3, 48),
         "backup": ("the school sports hall", "the church hall next door",
                    "the following Saturday", "the library's main reading room")},
        ("When do the doors open for the {club}'s {event}?",
         "How much does it cost for a child under {age} to attend the {event}?",
         "What happens to the {event} if the weather is bad?",
         "How are visitors asked to travel to the {club}'s {event}?",
         "On what date is the {club}'s {event}?")),
    _Template(
        "The {museum} is open from {opens} to {closes}, Tuesday to Sunday, and is closed on "
        "Mondays. Entry is free on the first {weekday} of every month; on other days a ticket "
        "costs {price}. The permanent collection covers {collection}. Guided tours in "
        "{languages} leave from the main hall every hour. Large bags must be left in the "
        "cloakroom, and photography without flash is allowed in all rooms except {except_room}.",
        {"museum": ("Museum of Everyday Things", "Calder Ridge Railway Museum", "Harbour Gallery",
                    "Wrenfield Museum of Clocks", "Stonebury Textile Museum",
                    "Museum of the River"),
         "opens": ("9 a.m.", "10 a.m.", "10.30 a.m."),
         "closes": ("5 p.m.", "6 p.m.", "7.30 p.m."),
         "weekday": _WEEKDAYS[1:],
         "price": ("6 pounds", "9 euros", "12 dollars", "7.50 euros"),
         "collection": ("three centuries of household objects",
                        "steam locomotives and railway posters",
                        "paintings of the coast by local artists",
                        "over four hundred clocks and watches",
                        "looms, fabrics and the history of the local mills",
                        "boats, fishing tools and old river maps"),
         "languages": ("English and French", "English, German and Spanish", "English only",
                       "English and Dutch"),
         "except_room": ("the special exhibition", "the print room", "the children's gallery")},
        ("On which day is the {museum} closed?", "When can I visit the {museum} for free?",
         "What are the opening hours of the {museum}?", "Can I take photos in the {museum}?",
         "In which languages are guided tours offered at the {museum}?",
         "What does the permanent collection of the {museum} cover?")),
    _Template(
        "Care guide for {plant}. This {plant_kind} prefers {light} and should be watered "
        "{water}. It grows best between {low} and {high} degrees Celsius. Feed it with {feed} "
        "once a month in spring and summer, and not at all in winter. {warning}",
        {"species": (
             {"plant": "the peace lily", "plant_kind": "leafy houseplant",
              "warning": "Its leaves are poisonous to cats and dogs, so keep it out of reach."},
             {"plant": "the snake plant", "plant_kind": "succulent",
              "warning": "Overwatering is the most common way to kill it."},
             {"plant": "the Boston fern", "plant_kind": "fern",
              "warning": "It dislikes dry air, so mist the leaves in winter."},
             {"plant": "rosemary", "plant_kind": "herb",
              "warning": "Cut it back lightly after flowering to keep it bushy."},
             {"plant": "the jade plant", "plant_kind": "succulent",
              "warning": "Let the soil dry out completely between waterings."},
             {"plant": "the moth orchid", "plant_kind": "flowering houseplant",
              "warning": "Never leave its roots standing in water."}),
         "light": ("bright, indirect light", "a sunny windowsill", "partial shade",
                   "low to medium light"),
         "water": ("once a week", "every ten days",
                   "whenever the top two centimetres of soil feel dry",
                   "sparingly, about every two weeks"),
         "range": ({"low": "15", "high": "24"}, {"low": "12", "high": "20"},
                   {"low": "18", "high": "27"}, {"low": "10", "high": "25"}),
         "feed": ("a liquid houseplant fertiliser", "a diluted tomato feed",
                  "a slow-release granular feed")},
        ("How often should I water {plant}?", "What temperature range does {plant} like?",
         "Where should I place {plant}?", "When should {plant} be fed, and with what?",
         "Is there anything I should be careful about with {plant}?")),
    _Template(
        "{operator} timetable notice: from {month}, the {line} will run every {every} minutes "
        "on weekdays and every {weekend} minutes at weekends. The first departure leaves "
        "{terminus} at {first}, and the last service returns at {last} every night. A single "
        "ticket costs "
        "{fare}; a weekly pass costs {weekly}. Passengers whose journey is delayed by more than "
        "{delay} minutes can claim a refund online within {claim} days.",
        {"operator": ("Valley Lines", "Coastlink Buses", "MetroRail North", "Greenway Trams"),
         "month": _MONTHS,
         "line": ("number 4 bus", "Harbour Express", "route 17 bus", "Airport Shuttle",
                  "N2 night bus"),
         "every": ("10", "12", "15", "20", "30"),
         "weekend": ("20", "30", "40", "60"),
         "terminus": ("Central Station", "the bus station", "Market Square",
                      "the university campus"),
         "first": ("5.40 a.m.", "6.00 a.m.", "6.15 a.m."),
         "last": ("10.45 p.m.", "11.30 p.m.", "0.20 a.m."),
         "fares": ({"fare": "2.80 pounds", "weekly": "18 pounds"},
                   {"fare": "1.90 euros", "weekly": "14 euros"},
                   {"fare": "2.50 dollars", "weekly": "20 dollars"}),
         "delay": ("15", "20", "30", "60"),
         "claim": ("14", "28", "30")},
        ("How often does the {line} run at weekends?", "What time is the first {line} departure?",
         "How much is a weekly pass for the {line}?",
         "Can I get a refund if my {line} journey is late, and how long do I have to claim?",
         "What time does the last {line} service return?")),
)

_RAG_LABELS = ("Passage {}", "Document {}", "[{}]", "Source {}")
_RAG_REQUESTS = (
    "Answer the question using only the passages below.\n\n{documents}\n\nQuestion: {question}",
    "Context:\n{documents}\n\nBased on the context above, answer this question: {question}",
    "{documents}\n\n{question} Answer in one sentence and say which passage you used.",
    "Read the documents and answer the question. If the answer is not in the documents, say "
    "so.\n\n{documents}\n\nQuestion: {question}",
    "I found this information:\n\n{documents}\n\nCan you tell me: {question}",
    "Question: {question}\n\nUse these sources to answer:\n\n{documents}",
)


def _rag(rng: random.Random) -> Turns:
    """A question about one passage, shown among zero to two unrelated passages."""
    relevant, *distractors = rng.sample(_RAG_DOCUMENTS, rng.choice((1, 2, 2, 3)))
    values = relevant.draw(rng)
    question = rng.choice(relevant.questions).format(**values)
    passages = [relevant.text.format(**values)] + [d.fill(rng) for d in distractors]
    rng.shuffle(passages)
    label = rng.choice(_RAG_LABELS)
    documents = "\n\n".join(f"{label.format(i)}: {p}" for i, p in enumerate(passages, start=1))
    return (rng.choice(_RAG_REQUESTS).format(documents=documents, question=question),)


# --- mt_bench: multi-turn chat ---------------------------------------------------------
# Each `_chat_*` function returns a first turn and the follow-ups that fit it.

_WRITING_FORMS = ("a short poem", "a haiku", "a limerick", "a four-line rhyme",
                  "a short story of under 200 words", "the opening paragraph of a blog post",
                  "a persuasive paragraph", "a product description", "the opening of a speech",
                  "a diary entry", "a letter to a friend", "a news-style paragraph")
_WRITING_TOPICS = ("autumn leaves", "a lost umbrella", "learning to swim",
                   "the first day at a new job", "a city at night",
                   "a robot that learns to paint", "moving to a new country", "a rainy Sunday",
                   "the smell of fresh bread", "a lighthouse keeper", "recycling",
                   "a bicycle trip through the mountains", "friendship", "a garden in winter",
                   "the last day of school", "a cat who thinks it is a dog",
                   "a busy train station", "the ocean", "a grandparent's kitchen", "a power cut",
                   "starting a small business", "volunteering at an animal shelter",
                   "a forgotten library book", "rain on a tin roof", "climbing a mountain",
                   "an old photograph")
_WRITING_REQUESTS = ("Write {form} about {topic}.", "Could you write {form} about {topic}?",
                     "Please compose {form} on the theme of {topic}.",
                     "I need {form} about {topic}. Can you help?")
_WRITING_FOLLOW_UPS = ("Now make it shorter.", "Rewrite it in a more formal tone.",
                       "Give it a title.", "Rewrite it for a young child.",
                       "Now turn it into a list of three key points.",
                       "Make it funnier.",
                       "Rewrite it from the point of view of someone else in it.",
                       "Translate your text into French.")


def _chat_writing(rng: random.Random) -> tuple[str, tuple[str, ...]]:
    form, topic = rng.choice(_WRITING_FORMS), rng.choice(_WRITING_TOPICS)
    return rng.choice(_WRITING_REQUESTS).format(form=form, topic=topic), _WRITING_FOLLOW_UPS


_ROLES = ("a tour guide in Rome", "a pirate captain", "a medieval blacksmith",
          "a friendly personal trainer", "a chef in a busy restaurant",
          "a detective in 1920s London", "a school librarian",
          "an astronaut on a space station", "a park ranger", "a barista",
          "a museum guide", "a travel agent", "a job interviewer", "a wise old wizard",
          "a sports commentator", "a science teacher",
          "a customer support agent for an internet provider", "a farmer", "a taxi driver",
          "a lighthouse keeper")
_ROLE_TASKS = ("Introduce yourself to a new visitor.", "Describe a typical day in your life.",
               "Give me one piece of advice for a beginner.",
               "Tell me about the hardest part of your work.",
               "I ask you for a recommendation. What do you suggest?",
               "Explain what you do to a five-year-old.",
               "Describe the most memorable thing that ever happened to you.",
               "What do you enjoy most about what you do?")
_ROLE_REQUESTS = ("Pretend you are {role}. {task}", "Act as {role}. {task}",
                  "Imagine you are {role} and stay in character. {task}",
                  "Let's play a game: you are {role}. {task}")
_ROLE_FOLLOW_UPS = ("Stay in character and tell me about a mistake you once made.",
                    "Now say the same thing in exactly three sentences.",
                    "What would you say to someone who wants to do your job?",
                    "Stay in character: what are you planning to do tomorrow?",
                    "Now drop the role and explain what a real person in that job does.")


def _chat_roleplay(rng: random.Random) -> tuple[str, tuple[str, ...]]:
    role, task = rng.choice(_ROLES), rng.choice(_ROLE_TASKS)
    return rng.choice(_ROLE_REQUESTS).format(role=role, task=task), _ROLE_FOLLOW_UPS


_ODD_ONE_OUT = (("apple", "banana", "cherry", "carrot"), ("violin", "cello", "harp", "trumpet"),
                ("Paris", "Madrid", "Berlin", "Amazon"), ("oak", "birch", "maple", "tulip"),
                ("circle", "square", "triangle", "cube"), ("shark", "salmon", "trout", "dolphin"),
                ("copper", "iron", "wood", "silver"), ("run", "jump", "swim", "happy"),
                ("July", "March", "Tuesday", "October"), ("red", "blue", "green", "loud"))
_REASONING_FOLLOW_UPS = ("Explain your reasoning step by step.",
                         "How sure are you of your answer, and why?",
                         "Can you make up a similar puzzle for me to solve?",
                         "What would change if the numbers were doubled?")


def _chat_reasoning(rng: random.Random) -> tuple[str, tuple[str, ...]]:
    a, b, c = (p["name"] for p in rng.sample(_FIRST_NAMES, 3))
    up = rng.randint(3, 5)
    books = 3 * rng.randint(5, 40)
    words = ", ".join(rng.sample(rng.choice(_ODD_ONE_OUT), 4))
    puzzles = (
        f"{a} is older than {b}, and {c} is younger than {b}. Who is the oldest of the three, "
        "and who is the youngest?",
        f"{a}, {b} and {c} ran a race. {a} did not win, and {c} crossed the line right after "
        f"{a}. In what order did they finish?",
        f"If today is {rng.choice(_WEEKDAYS)}, what day of the week will it be in "
        f"{rng.randint(10, 100)} days?",
        f"A drawer holds {rng.randint(4, 12)} red socks and {rng.randint(4, 12)} blue socks. In "
        "the dark, how many socks must you take out to be sure of a matching pair?",
        f"{a} has twice as many books as {b}, and together they have {books} books. How many "
        "books does each of them have?",
        f"Which word does not belong with the others: {words}? Why?",
        f"A snail climbs {up} metres up a wall each day and slides back {rng.randint(1, up - 1)} "
        f"metres each night. The wall is {rng.randint(10, 30)} metres high. On which day does "
        "the snail reach the top?",
    )
    return rng.choice(puzzles), _REASONING_FOLLOW_UPS


_MATH_FOLLOW_UPS = ("Check your answer by working backwards.",
                    "Explain the method so that a twelve-year-old could follow it.",
                    "Give me a similar problem to try myself.",
                    "Is there a faster way to get the same answer?")


def _chat_math(rng: random.Random) -> tuple[str, tuple[str, ...]]:
    a, x, b = rng.randint(2, 9), rng.randint(-9, 12), rng.randint(1, 30)
    gcd = rng.randint(2, 12)
    problems = (
        f"Solve for x: {a}x + {b} = {a * x + b}.",
        f"What is the area of a triangle with a base of {rng.randint(3, 20)} cm and a height of "
        f"{rng.randint(2, 15)} cm?",
        f"Is {rng.randint(20, 400)} a prime number? Explain how you checked.",
        f"Find the greatest common divisor of {gcd * rng.randint(2, 9)} and "
        f"{gcd * rng.randint(10, 19)}.",
        f"What is the sum of all whole numbers from 1 to {rng.randint(10, 200)}?",
        f"Simplify the fraction {gcd * rng.randint(1, 7)}/{gcd * rng.randint(8, 15)}.",
        f"What is {rng.choice((5, 15, 35, 60, 75))}% of {10 * rng.randint(2, 90)}?",
        f"A square has a perimeter of {4 * rng.randint(3, 30)} cm. What is its area?",
    )
    return rng.choice(problems), _MATH_FOLLOW_UPS


_CODING_TASKS = ("reverses a string", "checks whether a word is a palindrome",
                 "returns the largest number in a list", "counts the vowels in a sentence",
                 "removes duplicates from a list while keeping the order",
                 "converts a temperature from Celsius to Fahrenheit",
                 "returns the n-th Fibonacci number", "checks whether a year is a leap year",
                 "merges two sorted lists into one sorted list",
                 "finds the most common word in a text",
                 "checks whether a string looks like an email address",
                 "computes the factorial of a number", "flattens a nested list",
                 "counts how often each character appears in a string",
                 "splits a list into chunks of a given size",
                 "returns all prime numbers below n",
                 "capitalises the first letter of every word",
                 "computes the average of a list of numbers, skipping missing values",
                 "checks whether two words are anagrams",
                 "converts a Roman numeral to an integer",
                 "reads a CSV file and returns the sum of one column",
                 "rotates a list by k positions",
                 "finds the second smallest number in a list",
                 "returns the items two lists have in common", "implements binary search",
                 "converts a number of seconds into hours, minutes and seconds",
                 "checks whether the brackets in a string are balanced",
                 "generates a random password of a given length",
                 "sorts a list of records by a given field",
                 "counts the words in a text file")
_LANGUAGES = ("Python", "Python", "Python", "JavaScript", "Go", "Rust", "Java", "C++", "C#")
_CODING_REQUESTS = ("Write a {language} function that {task}.",
                    "How would I write a function in {language} that {task}?",
                    "Can you show me {language} code that {task}?",
                    "I'm learning {language}. Please write a function that {task} and explain it.")
_CODING_FOLLOW_UPS = ("Add comments explaining each step.", "Now write a few unit tests for it.",
                      "What is the time complexity of your solution?",
                      "Rewrite it in another programming language of your choice.",
                      "How should the function handle invalid input?",
                      "Can you make it shorter without making it harder to read?")


def _chat_coding(rng: random.Random) -> tuple[str, tuple[str, ...]]:
    request = rng.choice(_CODING_REQUESTS)
    first = request.format(language=rng.choice(_LANGUAGES), task=rng.choice(_CODING_TASKS))
    return first, _CODING_FOLLOW_UPS


_EXTRACTION_REQUESTS = (
    "Extract every number and date from the text below and say what each one refers to.\n\n{text}",
    "List every person, place and organisation mentioned in this text.\n\n{text}",
    "From the following text, extract the key facts as a list of 'field: value' pairs.\n\n{text}",
    "Read this and pull out any prices, times and quantities it mentions.\n\n{text}",
)
_EXTRACTION_FOLLOW_UPS = ("Now give the same information as JSON.",
                          "Which of these facts would matter most to a visitor, and why?",
                          "Turn your list into a table with two columns.",
                          "Write one question that this text cannot answer.")


def _chat_extraction(rng: random.Random) -> tuple[str, tuple[str, ...]]:
    text = rng.choice(_RAG_DOCUMENTS).fill(rng)
    return rng.choice(_EXTRACTION_REQUESTS).format(text=text), _EXTRACTION_FOLLOW_UPS


_DEVICES = ("a refrigerator", "GPS navigation", "a microwave oven", "a solar panel",
            "noise-cancelling headphones", "a heat pump", "a touchscreen", "a vaccine",
            "a jet engine", "Wi-Fi", "a lithium-ion battery", "the human eye",
            "a suspension bridge",
            "an electric motor", "a smoke detector")
_CONTRASTS = (("weather", "climate"), ("a virus", "a bacterium"), ("speed", "velocity"),
              ("mass", "weight"), ("an element", "a compound"), ("memory", "storage in a computer"),
              ("a comet", "an asteroid"), ("AC", "DC electricity"), ("mitosis", "meiosis"),
              ("an acid", "a base"), ("heat", "temperature"), ("a moon", "a planet"),
              ("a hypothesis", "a theory"), ("nuclear fission", "nuclear fusion"),
              ("an exothermic", "an endothermic reaction"))
_HOW_IT_WORKS = ("Explain how {} works in simple terms.",
                 "How does {} work? Explain it to a high-school student.",
                 "Can you describe, step by step, how {} works?")
_DIFFERENCES = ("What is the difference between {} and {}?",
                "People often mix up {} and {}. How are they different?",
                "Compare {} and {} in a short paragraph.")
_STEM_FOLLOW_UPS = ("Give a real-world example.", "What is a common misconception about this?",
                    "Explain it again using an analogy.",
                    "What would a simple experiment to show this look like?")


def _chat_stem(rng: random.Random) -> tuple[str, tuple[str, ...]]:
    if rng.random() < 0.5:
        return rng.choice(_HOW_IT_WORKS).format(rng.choice(_DEVICES)), _STEM_FOLLOW_UPS
    return rng.choice(_DIFFERENCES).format(*rng.choice(_CONTRASTS)), _STEM_FOLLOW_UPS


_EVENTS = ("the invention of the printing press", "the Industrial Revolution",
           "the spread of railways in the 19th century", "the arrival of television",
           "the fall of the Western Roman Empire", "the Renaissance", "the Silk Road trade",
           "the invention of writing", "the first Moon landing", "the rise of social media",
           "the spread of public libraries", "the invention of photography",
           "the growth of cities in the 1800s", "the arrival of the personal computer",
           "the building of the first canals", "the introduction of paper money")
_EVENT_QUESTIONS = ("What were the main effects of {} on everyday life?",
                    "Why do historians consider {} important?",
                    "Describe how {} changed the way people worked and lived.")
_DEBATES = ("homework should be banned in primary schools", "museums should be free to enter",
            "everyone should learn a second language", "cities should ban cars from their centres",
            "history is as useful to study as science", "art made with computers is real art",
            "people should be allowed to vote from the age of sixteen",
            "libraries still matter in the age of the internet",
            "schools should teach philosophy to young children",
            "famous novels should be rewritten in modern language",
            "tourism does more good than harm to historic towns",
            "every adult should do a year of community service")
_DEBATE_QUESTIONS = ("Discuss whether {}.",
                     "Give two arguments for and two against the idea that {}.",
                     "Write a short essay on the claim that {}.")
_COMPARISONS = (("Impressionism", "Realism in painting"), ("poetry", "prose"),
                ("a democracy", "a monarchy"), ("Stoicism", "Epicureanism"),
                ("classical music", "jazz"), ("epic poems", "novels"),
                ("folk tales", "modern fantasy novels"),
                ("Greek tragedy", "Shakespeare's tragedies"))
_HUMANITIES_FOLLOW_UPS = ("Now argue the opposite side.", "Summarise your answer in two sentences.",
                          "Which books or sources would you read to learn more?",
                          "How might someone from another culture see this differently?")


def _chat_humanities(rng: random.Random) -> tuple[str, tuple[str, ...]]:
    kind = rng.randrange(3)
    if kind == 0:
        question = rng.choice(_EVENT_QUESTIONS).format(rng.choice(_EVENTS))
    elif kind == 1:
        question = rng.choice(_DEBATE_QUESTIONS).format(rng.choice(_DEBATES))
    else:
        question = rng.choice(_DIFFERENCES).format(*rng.choice(_COMPARISONS))
    return question, _HUMANITIES_FOLLOW_UPS


_CHAT_KINDS = (_chat_writing, _chat_roleplay, _chat_reasoning, _chat_math, _chat_coding,
               _chat_extraction, _chat_stem, _chat_humanities)


def _mt_bench(rng: random.Random) -> Turns:
    """A chat request of one of eight kinds; about half get a second, follow-up turn."""
    first, follow_ups = rng.choice(_CHAT_KINDS)(rng)
    if rng.random() < 0.5:
        return (first,)
    return (first, rng.choice(follow_ups))


# --- the registry and the corpus -------------------------------------------------------

PROMPT_GENERATORS: dict[str, Callable[[random.Random], Turns]] = {
    "mt_bench": _mt_bench,
    "translation": _translation,
    "summarization": _summarization,
    "qa": _qa,
    "math_reasoning": _math_reasoning,
    "rag": _rag,
}
"""Category -> function drawing one random prompt (its turns) of that category."""


def training_prompts(n: int | None = None, seed: int = 0) -> list[Question]:
    """Distinct user prompts for training the adapter, an equal share from each category.

    `n` defaults to `DEFAULT_NUM_PROMPTS`. The same `n` and `seed` always give the same
    prompts in the same (shuffled) order. Ids look like "rag-00012". The templates make
    enough distinct prompts for n up to about 20,000 (the short `qa` questions run out
    first); asking for more raises ValueError.
    """
    n = DEFAULT_NUM_PROMPTS if n is None else n
    if n < 0:
        raise ValueError(f"n must be a non-negative number of prompts, got {n}")
    per_category, extra = divmod(n, len(PROMPT_GENERATORS))
    prompts = []
    for i, (category, generate) in enumerate(PROMPT_GENERATORS.items()):
        quota = per_category + (i < extra)  # the first `extra` categories get one more
        rng = random.Random(f"{seed}:{category}")  # one stream per category, independent of others
        drawn = _draw_distinct(generate, rng, quota, category)
        prompts += [Question(f"{category}-{i:05d}", category, turns)
                    for i, turns in enumerate(drawn)]
    random.Random(seed).shuffle(prompts)
    return prompts


def _draw_distinct(generate: Callable[[random.Random], Turns], rng: random.Random,
                   count: int, category: str) -> list[Turns]:
    """Call `generate` until `count` different prompts have come out (in drawing order)."""
    seen: dict[Turns, None] = {}
    max_draws = 20 * count + 1000
    for _ in range(max_draws):
        if len(seen) == count:
            break
        seen.setdefault(generate(rng), None)
    if len(seen) < count:
        raise ValueError(f"could only draw {len(seen)} distinct '{category}' prompts out of the "
                         f"{count} asked for; ask training_prompts() for fewer prompts")
    return list(seen)


# ---------------------------------------------------------------------------------------
# The mini-bench and question files
#
# Spec-Bench's question.jsonl holds one JSON object per line:
#     {"question_id": 1, "category": "mt_bench", "turns": ["first turn", "second turn"]}
# ---------------------------------------------------------------------------------------

_SPEC_BENCH_EXAMPLE = '{"question_id": 1, "category": "qa", "turns": ["What is a comet?"]}'
_HUMAN_ROLES = ("human", "user")
"""ShareGPT speakers whose turns are kept; "gpt", "chatgpt", "system", ... are dropped."""

_RecordParser = Callable[[object, int], "Question | None"]


def load_minibench() -> list[Question]:
    """The 60 hand-written questions shipped with the package, 10 per category.

    They are in Spec-Bench's format (`mt_bench` questions have two turns) and share no
    text with `training_prompts()`, which the tests check.
    """
    resource = files("kangaroo_lab") / "assets" / "minibench.jsonl"
    text = resource.read_text(encoding="utf-8")
    return _parse(_jsonl_records(text, "minibench.jsonl"), "minibench.jsonl",
                  _spec_bench_record, unique_ids=True)


def load_spec_bench(path: str | Path) -> list[Question]:
    """Spec-Bench's `question.jsonl` (or any file in its format); extra keys are ignored."""
    return _parse(_jsonl_records(_read_text(path), str(path)), str(path),
                  _spec_bench_record, unique_ids=True)


def load_jsonl_prompts(path: str | Path) -> list[Question]:
    """Plain prompts, one JSON value per line.

    A line is `{"prompt": "..."}`, `{"turns": ["...", "..."]}` or a bare JSON string.
    Objects may carry a `category` (default "custom") and an `id` or `question_id`
    (default: the line number).
    """
    return _parse(_jsonl_records(_read_text(path), str(path)), str(path),
                  _prompt_record, unique_ids=True)


def load_sharegpt(path: str | Path) -> list[Question]:
    """ShareGPT conversations; the human turns become the question's turns.

    The file is a JSON list of `{"id": ..., "conversations": [{"from": "human", "value":
    "..."}, {"from": "gpt", ...}, ...]}`, or the same objects one per line. Conversations
    without a human turn (ShareGPT has some) are skipped; the id defaults to the 1-based
    position in the file.
    """
    text = _read_text(path)
    if text.lstrip().startswith("["):
        records = _json_list_records(text, str(path))
    else:
        records = _jsonl_records(text, str(path))
    return _parse(records, str(path), _sharegpt_record, unique_ids=False)


def load_questions(path: str | Path) -> list[Question]:
    """Load a question file of any supported format, judging by its content.

    A JSON list, or lines with a "conversations" key, is ShareGPT; lines with "question_id"
    and "turns" are Spec-Bench; anything else is read as plain prompts.
    """
    text = _read_text(path)
    if text.lstrip().startswith("["):
        return load_sharegpt(path)
    first_line = next((line for line in text.splitlines() if line.strip()), "")
    try:
        first = json.loads(first_line)
    except json.JSONDecodeError:
        first = None  # let the prompt loader report the bad line with its number
    if isinstance(first, dict) and "conversations" in first:
        return load_sharegpt(path)
    if isinstance(first, dict) and "question_id" in first and "turns" in first:
        return load_spec_bench(path)
    return load_jsonl_prompts(path)


def write_questions(questions: Iterable[Question], path: str | Path) -> Path:
    """Write questions in Spec-Bench's format (one JSON object per line); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as out:
        for q in questions:
            record = {"question_id": q.question_id, "category": q.category, "turns": list(q.turns)}
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
    return path


# --- reading and checking records ------------------------------------------------------

def _read_text(path: str | Path) -> str:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"No question file at {path}. Check the path; Spec-Bench's questions are "
            "data/spec_bench/question.jsonl in its repository, and load_minibench() needs no file.")
    return path.read_text(encoding="utf-8")


def _jsonl_records(text: str, source: str) -> Iterator[tuple[str, int, object]]:
    """Yield (place, number, record) for each non-blank line; `place` is e.g. "line 7"."""
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{source}, line {line_no}: not valid JSON ({err.msg}). Each line "
                             f"must hold one JSON value, e.g. {_SPEC_BENCH_EXAMPLE}") from None
        yield f"line {line_no}", line_no, record


def _json_list_records(text: str, source: str) -> Iterator[tuple[str, int, object]]:
    """Yield (place, number, record) for each item of a JSON list; `place` is e.g. "item 3"."""
    try:
        records = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{source}, line {err.lineno}: not valid JSON ({err.msg}).") from None
    if not isinstance(records, list):
        raise ValueError(f"{source}: expected a JSON list of conversations")
    for number, record in enumerate(records, start=1):
        yield f"item {number}", number, record


def _parse(records: Iterable[tuple[str, int, object]], source: str, parse: _RecordParser,
           unique_ids: bool) -> list[Question]:
    """Turn records into Questions; a bad record raises ValueError naming file and place."""
    questions: list[Question] = []
    first_place: dict[int | str, str] = {}
    for place, number, record in records:
        try:
            question = parse(record, number)
        except ValueError as err:
            raise ValueError(f"{source}, {place}: {err}") from None
        if question is None:
            continue
        if unique_ids and question.question_id in first_place:
            raise ValueError(f"{source}, {place}: question_id {question.question_id!r} was already "
                             f"used on {first_place[question.question_id]}; ids must be unique")
        first_place[question.question_id] = place
        questions.append(question)
    if not questions:
        raise ValueError(f"{source} holds no questions (it is empty or has only blank lines "
                         "or skipped conversations)")
    return questions


def _spec_bench_record(record: object, number: int) -> Question:
    if not isinstance(record, dict):
        raise ValueError(f"expected a JSON object like {_SPEC_BENCH_EXAMPLE}, got {_short(record)}")
    missing = [key for key in ("question_id", "category", "turns") if key not in record]
    if missing:
        raise ValueError(f"missing {', '.join(repr(k) for k in missing)}; expected an object "
                         f"like {_SPEC_BENCH_EXAMPLE}")
    return Question(_check_id(record["question_id"]), _check_category(record["category"]),
                    _check_turns(record["turns"]))


def _prompt_record(record: object, number: int) -> Question:
    if isinstance(record, str):
        record = {"prompt": record}
    if not isinstance(record, dict):
        raise ValueError('expected {"prompt": "..."}, {"turns": ["...", ...]} or a JSON string, '
                         f"got {_short(record)}")
    if "turns" in record:
        turns = _check_turns(record["turns"])
    elif "prompt" in record:
        if not isinstance(record["prompt"], str) or not record["prompt"].strip():
            raise ValueError(f'"prompt" must be a non-empty string, got {_short(record["prompt"])}')
        turns = (record["prompt"],)
    else:
        raise ValueError(f'expected a "prompt" string or a "turns" list; keys are {sorted(record)}')
    question_id = record.get("id", record.get("question_id", number))
    category = _check_category(record.get("category", "custom"))
    return Question(_check_id(question_id), category, turns)


def _sharegpt_record(record: object, number: int) -> Question | None:
    if not isinstance(record, dict) or not isinstance(record.get("conversations"), list):
        raise ValueError('expected an object with a "conversations" list of '
                         '{"from": "human", "value": "..."} messages')
    turns = []
    for message in record["conversations"]:
        if not (isinstance(message, dict) and isinstance(message.get("from"), str)
                and isinstance(message.get("value"), str)):
            raise ValueError('each message must look like {"from": "human", "value": "..."}, '
                             f"got {_short(message)}")
        if message["from"].lower() in _HUMAN_ROLES and message["value"].strip():
            turns.append(message["value"])
    if not turns:
        return None
    return Question(_check_id(record.get("id", number)), "sharegpt", tuple(turns))


def _check_turns(turns: object) -> tuple[str, ...]:
    if not isinstance(turns, list) or not turns:
        raise ValueError(f'"turns" must be a non-empty list of strings, got {_short(turns)}')
    for i, turn in enumerate(turns, start=1):
        if not isinstance(turn, str) or not turn.strip():
            raise ValueError(f"turn {i} must be a non-empty string, got {_short(turn)}")
    return tuple(turns)


def _check_id(question_id: object) -> int | str:
    if isinstance(question_id, bool) or not isinstance(question_id, (int, str)):
        raise ValueError(f"the question id must be an integer or a string, "
                         f"got {_short(question_id)}")
    return question_id


def _check_category(category: object) -> str:
    if not isinstance(category, str) or not category:
        raise ValueError(f'"category" must be a non-empty string, got {_short(category)}')
    return category


def _short(value: object, limit: int = 60) -> str:
    """A value's JSON text, cut short, for error messages."""
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ---------------------------------------------------------------------------------------
# Self-distillation
#
# Kangaroo trains the adapter on answers written by the target model itself, so that the
# draft learns to imitate the very model it drafts for. The code that turns the prompts
# above into such training examples goes here.
# ---------------------------------------------------------------------------------------

CORPUS_FORMAT = "kangaroo-lab-corpus/1"


@dataclass(frozen=True)
class Example:
    """One self-distilled training example: a conversation up to a user turn, and the target's answer."""

    example_id: str  # "<question_id>#<turn>"
    category: str
    prompt_ids: tuple[int, ...]
    response_ids: tuple[int, ...]


def tokenizer_signature(model) -> str:
    """Identifies a tokenizer: vocabulary size and a hash of how it splits a probe text."""
    import hashlib

    probe = "The quick brown fox, 1234 ÿ€ 猫 <|im_end|> jumps."
    ids = model.tokenizer(probe, add_special_tokens=False).input_ids
    digest = hashlib.sha1(json.dumps(ids).encode()).hexdigest()[:12]
    return f"{model.config.vocab_size}:{digest}"


def self_distill(model, questions: list[Question], path: str | Path, max_new_tokens: int = 256,
                 batch_size: int = 64, temperature: float = 0.0, top_p: float = 1.0, seed: int = 0,
                 max_prompt_tokens: int = 1024, progress: bool = True) -> Path:
    """Let the target model answer every turn of every question; write token ids to a JSONL corpus.

    Turn 1 of every question is answered first, then turn 2 with the model's own first answer in
    the conversation, and so on. Generation is batched (left-padded, through transformers'
    `generate` on the same weights) and runs on the model's device. The file starts with a
    header naming the model and tokenizer; each later line is one `Example`. Re-running with the
    same path resumes: answers already in the file are kept and not generated again."""
    from tqdm.auto import tqdm

    path = Path(path)
    header = {"format": CORPUS_FORMAT, "model": model.name, "tokenizer": tokenizer_signature(model),
              "max_new_tokens": max_new_tokens, "temperature": temperature, "top_p": top_p}
    done = {e.example_id: e for e in _resume_corpus(path, header)}
    hf = model.to_hf()
    n_turns = max(len(q.turns) for q in questions)
    todo_total = sum(len(q.turns) for q in questions) - len(done)
    bar = tqdm(total=todo_total, desc="self-distillation", unit="answer", disable=not progress)
    with path.open("a", encoding="utf-8") as out:
        for turn in range(n_turns):
            todo = []
            for q in questions:
                if len(q.turns) > turn and f"{q.question_id}#{turn + 1}" not in done:
                    ids = model.encode(_conversation(model, q, turn, done))
                    if len(ids) <= max_prompt_tokens:
                        todo.append((q, ids))
                    else:
                        bar.total -= len(q.turns) - turn
            todo.sort(key=lambda item: len(item[1]))  # similar lengths together: less padding
            for start in range(0, len(todo), batch_size):
                chunk = todo[start:start + batch_size]
                answers = _answer_batch(hf, model, [ids for _, ids in chunk], max_new_tokens,
                                        temperature, top_p, seed + start + turn * len(todo))
                for (q, ids), answer in zip(chunk, answers):
                    example = Example(f"{q.question_id}#{turn + 1}", q.category, tuple(ids), tuple(answer))
                    done[example.example_id] = example
                    out.write(json.dumps({"id": example.example_id, "category": example.category,
                                          "prompt_ids": ids, "response_ids": answer}) + "\n")
                out.flush()
                bar.update(len(chunk))
    bar.close()
    return path


def _conversation(model, q: Question, turn: int, done: dict) -> list[dict]:
    """Chat messages up to user turn `turn` (0-based), with the model's earlier answers."""
    messages = []
    for t in range(turn + 1):
        messages.append({"role": "user", "content": q.turns[t]})
        if t < turn:
            answer = done[f"{q.question_id}#{t + 1}"].response_ids
            messages.append({"role": "assistant", "content": model.decode(answer)})
    return messages


def _answer_batch(hf, model, prompts: list[list[int]], max_new_tokens: int, temperature: float,
                  top_p: float, seed: int) -> list[list[int]]:
    """Greedy or sampled answers for a batch of prompts (left-padded); each cut after its EOS."""
    import torch

    pad = model.tokenizer.pad_token_id
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, p in enumerate(prompts):
        ids[i, width - len(p):] = torch.tensor(p)
        mask[i, width - len(p):] = 1
    torch.manual_seed(seed)
    sampling = dict(do_sample=True, temperature=temperature, top_p=top_p) if temperature > 0 else dict(do_sample=False)
    with torch.inference_mode():
        out = hf.generate(input_ids=ids.to(model.device), attention_mask=mask.to(model.device),
                          max_new_tokens=max_new_tokens, pad_token_id=pad,
                          eos_token_id=sorted(model.eos_token_ids), **sampling)
    answers = []
    for row in out[:, width:].tolist():
        end = next((i + 1 for i, t in enumerate(row) if t in model.eos_token_ids), len(row))
        answers.append(row[:end])
    return answers


def _resume_corpus(path: Path, header: dict) -> list[Example]:
    """Examples already in `path` (after checking its header fits), or a new file with `header`."""
    if not path.exists() or path.stat().st_size == 0:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(header) + "\n", encoding="utf-8")
        return []
    old_header, examples = read_corpus_file(path)
    if old_header["tokenizer"] != header["tokenizer"]:
        raise ValueError(f"{path} was made with another tokenizer ({old_header['model']}); "
                         "write the new corpus to another file")
    return examples


def read_corpus_file(path: str | Path) -> tuple[dict, list[Example]]:
    """A self-distilled corpus: (header, examples). Bad lines are reported with their number."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no corpus at {path}: make one with `kangaroo-lab distill` or self_distill()")
    records = list(_jsonl_records(path.read_text(encoding="utf-8"), str(path)))
    if not records or not isinstance(records[0][2], dict) or records[0][2].get("format") != CORPUS_FORMAT:
        raise ValueError(f"{path} is not a Kangaroo Lab corpus (its first line must be a header with "
                         f'"format": "{CORPUS_FORMAT}"); make one with `kangaroo-lab distill`')
    examples = []
    for place, _, r in records[1:]:
        try:
            examples.append(Example(r["id"], r["category"], tuple(r["prompt_ids"]), tuple(r["response_ids"])))
        except (KeyError, TypeError) as e:
            raise ValueError(f"{path}, {place}: expected id, category, prompt_ids, response_ids ({e})") from None
    return records[0][2], examples
