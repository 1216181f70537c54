"""Builds the embedded sample corpus `data_pipeline/sample/` (original Swahili written for this project).

Command:  python -m data_pipeline.make_sample            (rewrites data_pipeline/sample/*.jsonl[.gz])

Deterministic: a fixed seed, templates and word lists below, gzip with mtime=0, binary writes.
Clean documents come from hand-written texts plus a template generator over ten registers
(news, story, health, farming, dialogue, education, weather, sport, notices, recipes).
Planted defects carry `"planted": "<kind>"` (also inside the bytes of lines that are not valid
JSON or UTF-8) so that tests and the README can count them; see `PLANTED` for the counts.
"""

from __future__ import annotations

import gzip
import io
import json
import random

import ftfy.bad_codecs  # noqa: F401  registers sloppy-windows-1252
from pathlib import Path

SAMPLE_DIR = Path(__file__).resolve().parent / "sample"
SHARDS = ("sample-00000.jsonl", "sample-00001.jsonl.gz", "sample-00002.jsonl", "sample-00003.jsonl.gz")
SEED = 20261124

NAMES = ["Amina", "Juma", "Neema", "Baraka", "Zawadi", "Hamisi", "Rehema", "Musa", "Halima", "Daudi",
         "Fatuma", "Petro", "Mwanaisha", "Salim", "Upendo", "Yusuf", "Khadija", "Omari", "Saidi",
         "Subira", "Athumani", "Mariamu", "Kassim", "Tumaini", "Wanjiru", "Otieno", "Akinyi",
         "Mwajuma", "Bakari", "Imani", "Shaban", "Esther", "Rashidi", "Zuhura", "Joseph", "Asha"]
PLACES = ["Dodoma", "Mombasa", "Kisumu", "Zanzibar", "Arusha", "Mwanza", "Tanga", "Morogoro", "Mbeya",
          "Iringa", "Nakuru", "Eldoret", "Lamu", "Kigoma", "Tabora", "Moshi", "Bukoba", "Lindi",
          "Mtwara", "Malindi", "Nairobi", "Dar es Salaam", "Musoma", "Songea", "Shinyanga", "Kilifi",
          "Pemba", "Singida", "Sumbawanga", "Garissa", "Voi", "Bagamoyo", "Kakamega", "Njombe"]
DAYS = ["Jumatatu", "Jumanne", "Jumatano", "Alhamisi", "Ijumaa", "Jumamosi", "Jumapili"]
MONTHS = ["Januari", "Februari", "Machi", "Aprili", "Mei", "Juni", "Julai", "Agosti", "Septemba",
          "Oktoba", "Novemba", "Desemba"]
CROPS = ["mahindi", "maharage", "mpunga", "mtama", "muhogo", "viazi vitamu", "kahawa", "chai",
         "korosho", "pamba", "ndizi", "alizeti", "karanga", "nyanya", "vitunguu", "mboga za majani"]
ANIMALS = ["ng'ombe", "mbuzi", "kondoo", "kuku", "bata", "punda", "ngamia"]
JOBS = ["mwalimu", "daktari", "mkulima", "mvuvi", "fundi seremala", "muuguzi", "dereva", "mfanyabiashara",
        "mhandisi", "mwanafunzi", "mshonaji", "askari", "mpishi", "mwandishi wa habari"]
OFFICIALS = ["Mkuu wa Mkoa", "Mkuu wa Wilaya", "Mkurugenzi wa Halmashauri", "Afisa Kilimo",
             "Mganga Mkuu wa Wilaya", "Afisa Elimu", "Diwani wa Kata", "Mwenyekiti wa Kijiji"]
TEAMS = ["Simba", "Yanga", "Azam", "Gor Mahia", "AFC Leopards", "Coastal Union", "Mtibwa Sugar",
         "Namungo", "Tusker", "Kagera Sugar", "Bandari", "Singida Black Stars", "Ihefu", "Ulinzi Stars"]
SUBJECTS = ["hisabati", "Kiswahili", "Kiingereza", "sayansi", "historia", "jiografia", "kemia",
            "fizikia", "biolojia", "uraia", "kompyuta", "sanaa"]
DISEASES = ["malaria", "kipindupindu", "homa ya matumbo", "kisukari", "shinikizo la damu", "kifua kikuu",
            "surua", "kuhara"]
DISHES = ["pilau", "wali wa nazi", "ugali", "chapati", "maharage ya nazi", "mchuzi wa samaki", "mandazi",
          "biriani", "ndizi za kupika", "mtori", "vitumbua", "samaki wa kupaka", "kachumbari", "uji wa mtama"]
SPICES = ["bizari", "iliki", "mdalasini", "karafuu", "tangawizi", "kitunguu saumu", "pilipili manga",
          "binzari manjano", "jira"]
WEATHER = ["mvua nyepesi", "mvua kubwa", "jua kali", "mawingu mazito", "upepo mkali", "ukungu asubuhi",
           "manyunyu ya jioni", "radi na ngurumo"]


def _fill(t: str, r: random.Random) -> str:
  """Replaces {slot} markers with random words; each occurrence draws independently."""
  pools = {"name": NAMES, "place": PLACES, "day": DAYS, "month": MONTHS, "crop": CROPS,
           "animal": ANIMALS, "job": JOBS, "official": OFFICIALS, "team": TEAMS, "subject": SUBJECTS,
           "disease": DISEASES, "dish": DISHES, "spice": SPICES, "weather": WEATHER}
  out = []
  for i, part in enumerate(t.split("{")):
    if i == 0:
      out.append(part)
      continue
    key, rest = part.split("}", 1)
    if key == "n":
      val = str(r.randint(2, 95))
    elif key == "big":
      val = f"{r.randint(1, 99) * 1000:,}"
    elif key == "year":
      val = str(r.randint(2015, 2026))
    elif key == "date":
      val = f"{r.randint(1, 28)} {r.choice(MONTHS)}"
    elif key == "pct":
      val = str(r.randint(5, 90))
    elif key == "temp":
      val = str(r.randint(14, 36))
    else:
      val = r.choice(pools[key])
    out.append(val + rest)
  return "".join(out)


# Sentence templates per register. The first list gives an opening sentence, the second the body.
REGISTERS: dict[str, tuple[list[str], list[str]]] = {
    "habari": ([
        "Wakazi wa {place} wamepokea kwa furaha habari za kukamilika kwa ujenzi wa barabara mpya.",
        "Serikali imetangaza mpango mpya wa kusambaza maji safi katika vijiji {n} vya mkoa wa {place}.",
        "Soko kuu la {place} limefunguliwa upya siku ya {day} baada ya ukarabati wa miezi {n}.",
        "Watu {n} wamejeruhiwa katika ajali ya basi iliyotokea karibu na {place} siku ya {day}.",
        "Halmashauri ya {place} imezindua kituo kipya cha afya kitakachohudumia wananchi zaidi ya {big}.",
    ], [
        "{official} wa {place}, {name}, alisema mradi huo umegharimu shilingi milioni {n}.",
        "Kwa mujibu wa taarifa iliyotolewa tarehe {date}, kazi hiyo ilianza mwaka {year}.",
        "Wananchi wengi walieleza kuwa huduma hiyo itapunguza gharama za usafiri kwa familia zao.",
        "Mfanyabiashara mmoja, {name}, alisema sasa wateja wanafika dukani kwake kwa urahisi zaidi.",
        "Polisi wa mkoa wa {place} wamesema uchunguzi bado unaendelea ili kubaini chanzo cha tukio hilo.",
        "Majeruhi walipelekwa katika hospitali ya wilaya ambako wanaendelea kupatiwa matibabu.",
        "Viongozi wa kijiji waliwaomba wananchi kutunza miundombinu hiyo kwa manufaa ya vizazi vijavyo.",
        "Takwimu zinaonyesha kuwa asilimia {pct} ya kaya za eneo hilo hazikuwa na huduma hiyo hapo awali.",
        "Mwandishi wetu aliyekuwepo {place} ameripoti kuwa shughuli za kawaida zimerejea.",
        "Hata hivyo, baadhi ya wakazi walilalamika kuwa hawakushirikishwa katika hatua za mwanzo.",
        "{name}, ambaye ni {job} katika eneo hilo, alisema mabadiliko hayo yameleta matumaini mapya.",
        "Mradi huo unatarajiwa kuwanufaisha zaidi ya wakazi {big} wa {place} na vitongoji vyake.",
        "Wizara husika imeahidi kufuatilia utekelezaji wake kila baada ya miezi {n}.",
        "Wazee wa mji walikumbusha kuwa tatizo hilo limekuwepo tangu mwaka {year}.",
        "Mkutano wa hadhara ulifanyika katika uwanja wa shule ya msingi siku ya {day} jioni.",
        "Vijana wa {place} wameanzisha kikundi cha kufanya usafi kila mwisho wa mwezi.",
    ]),
    "hadithi": ([
        "Hapo zamani za kale, katika kijiji kimoja karibu na {place}, aliishi kijana aitwaye {name}.",
        "Paukwa! Pakawa! Palikuwa na mzee mmoja mwenye busara aliyeitwa {name}.",
        "Siku moja ya {day}, {name} aliamka alfajiri na kuamua kwenda sokoni {place}.",
        "Bibi yangu alinisimulia hadithi ya sungura mjanja na fisi mwenye tamaa.",
    ], [
        "Alikuwa na {animal} {n} ambao aliwapenda kuliko kitu chochote duniani.",
        "Njiani alikutana na rafiki yake {name} ambaye alikuwa amebeba kikapu cha {crop}.",
        "Jua lilipokuwa likizama, upepo mwanana ulivuma kutoka baharini.",
        "Sungura alicheka sana, kisha akakimbia hadi ng'ambo ya mto bila kuangalia nyuma.",
        "Fisi alisubiri chini ya mti wa mbuyu usiku kucha, lakini hakuna kilichotokea.",
        "Mama yake alimwambia, \"Mwanangu, haraka haraka haina baraka.\"",
        "Watoto wa kijiji walikusanyika kuzunguka moto kusikiliza hadithi za wazee.",
        "Kwa mshangao mkubwa, aligundua kuwa mlango wa nyumba ulikuwa wazi.",
        "Mvua ilianza kunyesha ghafla, na kila mtu akakimbilia kujificha chini ya paa.",
        "Baada ya siku {n}, {name} alirudi nyumbani akiwa amechoka lakini mwenye furaha.",
        "Tangu siku hiyo, wanakijiji walijifunza kuwa umoja ni nguvu na utengano ni udhaifu.",
        "Mzee alitabasamu, akachukua fimbo yake na kuondoka taratibu kuelekea shambani.",
        "Ndege walikuwa wakiimba juu ya miti ya miembe iliyozunguka boma lao.",
        "Usiku ule mwezi ulikuwa mpevu, na njia yote ilionekana kama mchana.",
        "Alipofika kisimani, alikuta wanawake wakichota maji huku wakiimba nyimbo za zamani.",
        "Hadithi yangu inaishia hapo; ukiipenda ichukue, usipoipenda niachie mwenyewe.",
    ]),
    "afya": ([
        "Wataalamu wa afya wanawashauri wananchi kuchukua tahadhari dhidi ya {disease}.",
        "Idara ya afya ya {place} imeanza kampeni ya chanjo itakayodumu kwa wiki {n}.",
        "Ugonjwa wa {disease} bado ni changamoto kubwa katika maeneo mengi ya vijijini.",
        "Mganga Mkuu wa {place}, Dkt. {name}, ametoa ushauri kuhusu lishe bora kwa watoto.",
    ], [
        "Ni muhimu kunawa mikono kwa maji safi na sabuni kabla ya kula na baada ya kutoka chooni.",
        "Maji ya kunywa yanapaswa kuchemshwa au kutibiwa kwa dawa kabla ya kutumiwa.",
        "Mtu akiona dalili kama homa, kutapika au kuumwa na kichwa anashauriwa kwenda kituo cha afya mapema.",
        "Kulala ndani ya chandarua kilichowekwa dawa hupunguza hatari ya kuumwa na mbu.",
        "Akina mama wajawazito wanahimizwa kuhudhuria kliniki angalau mara {n} kabla ya kujifungua.",
        "Watoto chini ya miaka mitano wanapaswa kupata chanjo zote kwa wakati.",
        "Lishe bora inajumuisha mboga za majani, matunda, nafaka na vyakula vya protini.",
        "Kwa mujibu wa takwimu, wagonjwa {big} walitibiwa katika hospitali za mkoa mwaka {year}.",
        "Mazoezi ya mwili kwa dakika thelathini kila siku husaidia kuzuia {disease}.",
        "Muuguzi {name} alieleza kuwa dawa hutolewa bure katika zahanati zote za serikali.",
        "Wananchi wanaombwa kutonunua dawa bila ushauri wa daktari au mfamasia.",
        "Kunywa maji ya kutosha na kupunguza matumizi ya chumvi ni muhimu kwa afya ya moyo.",
        "Kampeni hiyo imewafikia wanafunzi wa shule {n} za msingi na sekondari.",
        "Wahudumu wa afya ngazi ya jamii watapita nyumba kwa nyumba kutoa elimu.",
        "Taka zinapaswa kuchomwa au kufukiwa mbali na vyanzo vya maji.",
    ]),
    "kilimo": ([
        "Wakulima wa {crop} mkoani {place} wanatarajia mavuno mazuri msimu huu.",
        "Afisa Kilimo wa wilaya ya {place}, {name}, amewashauri wakulima kutumia mbegu bora.",
        "Bei ya {crop} imepanda katika masoko ya {place} kutokana na uhaba wa mvua.",
        "Ufugaji wa {animal} umekuwa chanzo kikubwa cha kipato kwa familia nyingi za {place}.",
    ], [
        "Kupanda mapema mara tu mvua za kwanza zinaponyesha huongeza mavuno kwa kiasi kikubwa.",
        "Mkulima {name} alisema alivuna magunia {n} ya {crop} kutoka kwenye ekari moja.",
        "Mbolea ya samadi inaboresha rutuba ya udongo na ni nafuu kwa wakulima wadogo.",
        "Wadudu waharibifu kama viwavijeshi wanaweza kudhibitiwa kwa kukagua shamba kila wiki.",
        "Ushirika wa wakulima umesaidia kupata soko la uhakika la {crop} nje ya mkoa.",
        "Kilo moja ya {crop} sasa inauzwa kwa shilingi {big} katika soko la {place}.",
        "{animal} wanahitaji maji safi, malisho ya kutosha na chanjo dhidi ya magonjwa.",
        "Kilimo cha umwagiliaji kinawasaidia wakulima kuzalisha hata wakati wa kiangazi.",
        "Wataalamu wanashauri kubadilisha mazao shambani ili kuzuia kuenea kwa magonjwa.",
        "Mavuno yanapaswa kukaushwa vizuri kabla ya kuhifadhiwa ghalani.",
        "Kikundi cha vijana {n} kimeanzisha kitalu cha miche ya {crop} na matunda.",
        "Mwaka {year} ukame uliharibu mashamba mengi, lakini msimu huu hali ni tofauti.",
        "Maziwa ya {animal} yanauzwa kwenye kituo cha kukusanyia maziwa kila asubuhi.",
        "Afisa ugani hutembelea vijiji mara {n} kwa mwezi kutoa ushauri wa kitaalamu.",
        "Miti iliyopandwa kandokando ya mashamba huzuia mmomonyoko wa udongo.",
    ]),
    "mazungumzo": ([
        "{name}: Habari za asubuhi, ndugu yangu? Umeamkaje leo?",
        "{name}: Shikamoo mzee! Hujambo leo?",
        "{name}: Mambo vipi rafiki? Siku nyingi hatujaonana!",
    ], [
        "{name}: Nzuri sana, asante. Wewe je, hali yako?",
        "{name}: Marahaba mwanangu. Sijambo kabisa, nashukuru Mungu.",
        "{name}: Poa tu. Nimetoka {place} jana usiku, safari ilikuwa ndefu.",
        "{name}: Je, utakwenda sokoni leo? Nataka kununua {crop} na vitunguu.",
        "{name}: Ndiyo, nitaenda baada ya chai. Tuende pamoja ukipenda.",
        "{name}: Bei ya nauli ya basi kwenda {place} ni kiasi gani siku hizi?",
        "{name}: Ni shilingi {big}, lakini siku ya {day} huwa juu kidogo.",
        "{name}: Watoto wako wanaendeleaje na masomo?",
        "{name}: Wanaendelea vizuri; mkubwa anasoma {subject} kwa bidii sana.",
        "{name}: Nimesikia kuna mvua kubwa huko {place}. Ni kweli?",
        "{name}: Kweli kabisa, barabara zimejaa maji na magari hayapiti.",
        "{name}: Basi nisalimie familia yako, tutaonana kesho.",
        "{name}: Haya, salamu zimefika. Safari njema!",
        "{name}: Samahani, naomba kuuliza njia ya kwenda hospitali ya wilaya.",
        "{name}: Nenda moja kwa moja, kisha upinde kushoto karibu na msikiti.",
        "{name}: Asante sana, Mungu akubariki.",
    ]),
    "elimu": ([
        "Matokeo ya mtihani wa taifa yametangazwa, na shule za {place} zimefanya vizuri.",
        "Shule ya sekondari ya {place} imepokea vitabu {big} vya masomo ya {subject}.",
        "Walimu {n} wa {subject} wamehitimu mafunzo ya kufundisha kwa kutumia kompyuta.",
        "Wizara ya Elimu imetangaza kalenda mpya ya muhula wa masomo kwa mwaka {year}.",
    ], [
        "Mkuu wa shule, Mwalimu {name}, alisema ufaulu umeongezeka kwa asilimia {pct}.",
        "Wanafunzi wanahimizwa kusoma vitabu vya hadithi ili kuongeza msamiati wao.",
        "Wazazi wameombwa kushirikiana na walimu katika kufuatilia maendeleo ya watoto.",
        "Darasa la {subject} sasa lina vifaa vya maabara vya kisasa.",
        "Mwanafunzi bora, {name}, alipata alama za juu katika {subject} na {subject}.",
        "Muhula wa kwanza utaanza tarehe {date} na kumalizika mwezi {month}.",
        "Chakula cha mchana shuleni kimesaidia kuongeza mahudhurio ya wanafunzi.",
        "Maktaba mpya ina nafasi ya wanafunzi {n} kusoma kwa wakati mmoja.",
        "Walimu walisema changamoto kubwa ni uhaba wa madarasa na madawati.",
        "Wanafunzi wa kidato cha nne watafanya mtihani wa majaribio mwezi {month}.",
        "Elimu ya watu wazima inatolewa jioni kwa wale ambao hawakupata nafasi ya kusoma.",
        "Shule imeanzisha klabu ya mdahalo inayokutana kila {day} baada ya masomo.",
        "Serikali imeajiri walimu wapya {big} katika shule za msingi nchini.",
        "Mashindano ya insha ya Kiswahili yalivutia washiriki kutoka shule {n}.",
    ]),
    "hali_ya_hewa": ([
        "Mamlaka ya hali ya hewa imetabiri {weather} katika mikoa ya pwani kuanzia {day}.",
        "Utabiri wa hali ya hewa kwa siku tano zijazo unaonyesha {weather} katika maeneo ya {place}.",
        "Wakazi wa {place} wametakiwa kuchukua tahadhari kutokana na {weather} inayotarajiwa.",
    ], [
        "Joto la juu linatarajiwa kufikia nyuzi {temp} za Selsiasi mchana.",
        "Nyakati za usiku joto litashuka hadi nyuzi {temp} katika maeneo ya milimani.",
        "Wavuvi wanashauriwa kutokwenda baharini kwa sababu ya mawimbi makubwa.",
        "Mvua za masika zinatarajiwa kuanza mwishoni mwa mwezi {month}.",
        "Wakulima wanashauriwa kuandaa mashamba mapema ili kunufaika na mvua hizo.",
        "Kiasi cha mvua kilichopimwa {place} jana kilikuwa milimita {n}.",
        "Upepo utavuma kutoka kusini mashariki kwa kasi ya kilomita {n} kwa saa.",
        "Maeneo ya mabondeni yanaweza kukumbwa na mafuriko, hivyo wakazi wawe macho.",
        "Hali ya ukavu inatarajiwa kuendelea katika mikoa ya kati hadi mwezi {month}.",
        "Anga litakuwa na mawingu kiasi asubuhi na jua kali mchana.",
        "Taarifa nyingine ya utabiri itatolewa siku ya {day} saa kumi jioni.",
        "Mamlaka imewakumbusha wananchi kufuatilia taarifa rasmi badala ya uvumi.",
    ]),
    "michezo": ([
        "Timu ya {team} imeibuka na ushindi wa mabao {n} kwa moja dhidi ya {team}.",
        "Mashindano ya riadha ya mkoa wa {place} yamefanyika katika uwanja wa uhuru.",
        "Kocha wa {team}, {name}, amesema kikosi chake kiko tayari kwa mechi ya {day}.",
        "Mchezaji {name} ameteuliwa kuwa mchezaji bora wa mwezi {month}.",
    ], [
        "Bao la kwanza lilifungwa dakika ya {n} kwa shuti kali nje ya eneo la hatari.",
        "Mashabiki maelfu walijaza uwanja huku wakiimba na kupeperusha bendera.",
        "Mwamuzi alitoa kadi nyekundu kwa beki wa timu pinzani kipindi cha pili.",
        "Kwa matokeo hayo, {team} imefikisha pointi {n} na kupanda kileleni mwa ligi.",
        "Mwanariadha {name} alishinda mbio za mita elfu kumi akitumia dakika {n}.",
        "Kocha alisema wachezaji walionyesha nidhamu na ari kubwa uwanjani.",
        "Mechi ijayo itachezwa {place} siku ya {day} saa kumi jioni.",
        "Timu ya taifa ya wanawake inajiandaa kwa mashindano ya kanda mwezi {month}.",
        "Nahodha {name} aliwashukuru mashabiki kwa kuiunga mkono timu muda wote.",
        "Uongozi wa klabu umeahidi kuboresha uwanja wa mazoezi kabla ya msimu ujao.",
        "Mchezo wa ngumi unazidi kupata umaarufu miongoni mwa vijana wa {place}.",
        "Wachezaji {n} wa akiba waliitwa kambini kujiandaa na michuano hiyo.",
    ]),
    "tangazo": ([
        "TANGAZO: Halmashauri ya Wilaya ya {place} inawatangazia wananchi wote kuhusu zoezi la kuhesabu watu.",
        "TAARIFA KWA UMMA: Ofisi ya {official} wa {place} inawakaribisha wananchi kwenye mkutano wa hadhara.",
        "NAFASI ZA KAZI: Halmashauri ya {place} inatangaza nafasi {n} za kazi kwa watu wenye sifa.",
    ], [
        "Zoezi hilo litaanza tarehe {date} na kuendelea kwa muda wa siku {n}.",
        "Wananchi wote wanaombwa kutoa ushirikiano kwa maafisa watakaopita katika kaya zao.",
        "Mkutano utafanyika katika ukumbi wa halmashauri kuanzia saa tatu asubuhi.",
        "Waombaji wanatakiwa kuwa na elimu ya kidato cha nne na uzoefu wa angalau miaka {n}.",
        "Barua za maombi zipelekwe kwa Mkurugenzi wa Halmashauri kabla ya tarehe {date}.",
        "Ajenda kuu ni mpango wa maendeleo wa kata na matumizi ya mapato ya ndani.",
        "Huduma zote zinazotolewa na ofisi hii ni bure; usitoe rushwa kwa mtu yeyote.",
        "Kwa maelezo zaidi, wasiliana na ofisi ya mtendaji wa kata iliyo karibu nawe.",
        "Wamiliki wa biashara wanakumbushwa kuhuisha leseni zao kabla ya mwisho wa mwezi {month}.",
        "Wananchi wanakumbushwa kulipa kodi ya majengo kwa wakati ili kuepuka adhabu.",
        "Tangazo hili limetolewa na {official}, {name}, kwa niaba ya serikali.",
        "Wale watakaochelewa hawatapokelewa baada ya muda uliopangwa.",
    ]),
    "mapishi": ([
        "Leo tutajifunza jinsi ya kupika {dish} kwa ajili ya watu {n}.",
        "{dish} ni chakula kinachopendwa sana katika pwani ya Afrika Mashariki.",
        "Mapishi haya ya {dish} yalifundishwa na bibi {name} wa {place}.",
    ], [
        "Mahitaji: vikombe {n} vya mchele, nazi moja, kitunguu kimoja na chumvi kiasi.",
        "Kwanza, osha viungo vyote vizuri kwa maji safi.",
        "Kata vitunguu vipande vidogo na uvikaange kwa mafuta hadi viwe rangi ya kahawia.",
        "Ongeza {spice} na {spice}, kisha koroga kwa dakika mbili.",
        "Kuna nazi na uchuje tui zito na tui jepesi katika vyombo viwili tofauti.",
        "Mimina tui jepesi kwanza, kisha acha lichemke kwa moto wa wastani.",
        "Ongeza chumvi kwa kuonja na funika sufuria kwa dakika {n}.",
        "Mwisho, mimina tui zito na upunguze moto ili chakula kisiungue.",
        "Pakua {dish} ikiwa bado moto na uliwe pamoja na kachumbari.",
        "Unaweza kuongeza nyama ya {animal} au samaki kulingana na upendavyo.",
        "Kanda unga kwa maji ya uvuguvugu hadi upate donge laini.",
        "Acha unga upumzike kwa dakika {n} kabla ya kusukuma.",
        "Chakula hiki kinafaa sana wakati wa sikukuu na shughuli za familia.",
        "Kumbuka kuosha mikono kabla ya kuanza kupika.",
    ]),
}

# Hand-written documents (one string each), used as they are.
HANDWRITTEN = [
    ("hadithi", "Kobe na Ndege. Hapo zamani kobe alitamani sana kuruka kama ndege. Kila siku aliwatazama "
     "ndege wakipaa juu ya miti na kuimba kwa furaha. Siku moja aliwaomba ndege wawili wambebe. Ndege "
     "walikubali, wakachukua kijiti, kila mmoja akashika upande wake, na kobe akakishika kijiti katikati kwa "
     "mdomo wake. Wakapaa juu sana, na kobe akaona mashamba, mito na nyumba zikiwa ndogo kama vitu vya "
     "kuchezea. Watoto waliokuwa chini walipowaona walipiga kelele wakisema, \"Tazameni kobe anayeruka!\" "
     "Kobe alijisikia fahari sana, akataka kuwajibu. Alipofungua mdomo tu, aliachia kijiti na kuanguka chini. "
     "Gamba lake lilipasuka vipande vipande, na ndiyo sababu hadi leo gamba la kobe lina mistari. Funzo la "
     "hadithi hii ni kwamba kiburi hakina faida, na mdomo huponza kichwa."),
    ("habari", "Dodoma. Bunge limepitisha muswada wa sheria ya usimamizi wa rasilimali za maji baada ya mjadala "
     "uliodumu kwa siku tatu. Waziri mwenye dhamana ya maji alieleza kuwa sheria hiyo mpya itaimarisha "
     "ulinzi wa vyanzo vya maji na kupunguza migogoro kati ya wakulima na wafugaji. Wabunge wengi "
     "waliunga mkono muswada huo, ingawa baadhi yao walitaka adhabu kali zaidi kwa wanaochafua mito. "
     "Mbunge wa jimbo moja la kanda ya ziwa alisema wananchi wake hutembea kilomita nyingi kutafuta maji. "
     "Kwa mujibu wa wizara, zaidi ya asilimia sabini ya wakazi wa vijijini sasa wanapata maji safi ndani ya "
     "mita mia nne kutoka makazi yao. Sheria hiyo itaanza kutumika baada ya kusainiwa na Rais."),
    ("mazungumzo", "Mteja: Habari za mchana, mama? Nyanya mnauzaje leo?\nMuuzaji: Nzuri, karibu sana. Fungu "
     "moja ni shilingi elfu moja, lakini ukichukua mafungu matatu nakupa kwa elfu mbili na mia tano.\n"
     "Mteja: Aah, bei imepanda! Wiki iliyopita nilinunua kwa mia nane tu.\nMuuzaji: Ni kweli, dada yangu. "
     "Mvua zimekuwa chache, na mizigo kutoka Iringa imepungua.\nMteja: Sawa basi, nipe mafungu matatu na "
     "vitunguu kidogo.\nMuuzaji: Haya, hivi hapa. Nimekuongezea pilipili mbili bure.\nMteja: Asante sana, "
     "Mungu akubariki. Nitarudi kesho kununua ndizi.\nMuuzaji: Karibu tena, uwe na siku njema!"),
    ("afya", "Malaria ni ugonjwa unaosababishwa na vimelea vinavyoenezwa na mbu jike aina ya anofelesi. Dalili "
     "zake kuu ni homa kali, kutetemeka, kuumwa na kichwa, maumivu ya viungo na kukosa hamu ya kula. Kwa "
     "watoto wadogo na akina mama wajawazito, ugonjwa huu unaweza kuwa hatari sana usipotibiwa mapema. "
     "Njia bora ya kujikinga ni kulala ndani ya chandarua chenye dawa kila usiku, kufyeka majani marefu "
     "yanayozunguka nyumba na kufukia madimbwi ya maji yaliyotuama. Mtu yeyote mwenye homa anashauriwa "
     "kupima damu katika kituo cha afya kabla ya kutumia dawa. Dawa za malaria zinapaswa kumalizwa zote "
     "kama ilivyoelekezwa, hata kama mgonjwa atajisikia nafuu baada ya siku moja au mbili."),
    ("kilimo", "Kilimo cha mwani kimebadilisha maisha ya wanawake wengi wa visiwa vya Zanzibar na Pemba. Wakati "
     "wa maji kupwa, wakulima huingia baharini na kufunga miche ya mwani kwenye kamba zilizonyooshwa kati ya "
     "vigingi. Baada ya wiki sita hadi nane mwani huvunwa, hukaushwa juani na kuuzwa kwa wanunuzi wanaousafirisha "
     "nje ya nchi. Mwani hutumika kutengeneza sabuni, vipodozi, dawa na hata vyakula. Hata hivyo, ongezeko la "
     "joto la bahari limesababisha mwani kufa kabla ya kukomaa katika baadhi ya maeneo. Wataalamu sasa "
     "wanawafundisha wakulima kupanda mwani kwenye maji ya kina kirefu zaidi ambako joto ni la chini."),
    ("elimu", "Kiswahili ni lugha ya Kibantu inayozungumzwa na watu zaidi ya milioni mia moja katika Afrika "
     "Mashariki na Kati. Ni lugha rasmi ya Tanzania na Kenya, na pia inatumika katika Uganda, Rwanda, Burundi "
     "na Jamhuri ya Kidemokrasia ya Kongo. Sarufi ya Kiswahili hutumia ngeli za nomino, kama vile ngeli ya "
     "M-WA kwa watu na ngeli ya KI-VI kwa vitu. Vitenzi hujengwa kwa kuunganisha viambishi vya nafsi, njeo, "
     "kitendwa na mzizi, kwa mfano neno \"hatutawaona\" lina maana ya kwamba sisi hatutawaona wao siku za "
     "usoni. Msamiati wake umechota maneno mengi kutoka Kiarabu, Kiajemi, Kireno, Kihindi na Kiingereza. "
     "Tarehe saba Julai kila mwaka huadhimishwa kama Siku ya Kiswahili Duniani."),
    ("michezo", "Mbio za Nyika. Zaidi ya wanariadha mia tatu walishiriki katika mbio za nyika zilizofanyika kwenye "
     "miteremko ya mlima Kilimanjaro. Washiriki walikimbia kilomita kumi na mbili kupitia mashamba ya kahawa, "
     "misitu na vijito vya maji baridi. Mshindi wa upande wa wanaume alimaliza kwa dakika thelathini na tisa, "
     "huku mshindi wa wanawake akitumia dakika arobaini na nne. Waandaaji walisema lengo la mbio hizo ni "
     "kuibua vipaji vipya na kutangaza utalii wa ndani. Washindi watatu wa kwanza katika kila kundi "
     "walizawadiwa fedha taslimu, medali na viatu vipya vya kukimbilia."),
    ("mapishi", "Chai ya Tangawizi. Mahitaji ni vikombe vitatu vya maji, kikombe kimoja cha maziwa, vijiko "
     "viwili vya majani ya chai, kipande cha tangawizi mbichi, iliki tatu na sukari kwa kupenda. Chemsha "
     "maji pamoja na tangawizi iliyopondwa na iliki kwa dakika tano hadi harufu nzuri itoke. Ongeza majani "
     "ya chai na uache yachemke kwa dakika mbili zaidi. Mimina maziwa na subiri chai ianze kupanda, kisha "
     "ipunguze moto. Chuja chai kwenye birika na ongeza sukari. Chai hii hunywewa asubuhi pamoja na mandazi "
     "au vitumbua, na inasaidia sana wakati wa baridi."),
    ("hali_ya_hewa", "Msimu wa vuli umeanza kwa kusuasua katika maeneo mengi ya kaskazini mashariki. Mvua "
     "zilizotarajiwa mwanzoni mwa Oktoba zimechelewa kwa wiki mbili, na wakulima wengi wamesimamisha upandaji. "
     "Wataalamu wa hali ya hewa wanasema hali hiyo inatokana na kupungua kwa joto la bahari katika upande wa "
     "magharibi wa Bahari ya Hindi. Hata hivyo, mvua za wastani zinatarajiwa kunyesha kuanzia katikati ya "
     "Novemba. Wafugaji wanashauriwa kuhifadhi malisho na kuepuka kuhamisha mifugo kwenda maeneo ya hifadhi. "
     "Mamlaka itaendelea kutoa taarifa kila wiki kupitia redio na mitandao rasmi."),
    ("tangazo", "TAARIFA YA KUFUNGWA KWA BARABARA. Wakala wa Barabara unawatangazia watumiaji wote wa barabara "
     "kuu ya Morogoro kwamba sehemu ya kilomita tano itafungwa kwa muda kuanzia Jumatatu ijayo. Kufungwa huko "
     "kunatokana na ujenzi wa daraja jipya juu ya mto. Magari madogo yatapitishwa kwenye njia ya mchepuko "
     "iliyowekwa alama, na magari makubwa yatatumia barabara ya zamani. Madereva wanaombwa kufuata maelekezo ya "
     "askari wa usalama barabarani na kuendesha kwa uangalifu. Usumbufu wowote utakaojitokeza unasikitikiwa. "
     "Kazi inatarajiwa kukamilika ndani ya miezi mitatu."),
]

FOREIGN = {
    "english": [
        "The city council announced on Monday that the new water project will reach more than ten villages "
        "before the end of the year. Residents welcomed the news, saying that women and children currently "
        "walk long distances every morning to fetch water. Officials said the work would begin after the "
        "rainy season and would employ local young people as builders.",
        "Farmers in the northern highlands expect a good harvest this season after steady rains in March and "
        "April. Maize prices have fallen slightly in the local markets, which traders say is good news for "
        "families in town. Agricultural officers continue to advise farmers to store their grain in dry, "
        "clean stores to protect it from insects and mould.",
        "Our school football team won the regional final by two goals to one last Saturday. The winning goal "
        "came in the last minute, when the captain shot from outside the box. The coach thanked the parents "
        "who travelled with the team and promised that the players will now train for the national games.",
        "To cook rice with coconut milk, wash two cups of rice and grate one fresh coconut. Squeeze the thick "
        "milk first and keep it aside, then add water and squeeze again for the thin milk. Boil the rice in "
        "the thin milk with a little salt, and when it is nearly dry pour in the thick milk and lower the heat.",
    ],
    "french": [
        "Le conseil municipal a annoncé lundi l'ouverture d'un nouveau marché couvert au centre de la ville. "
        "Les commerçants pourront louer un emplacement à partir du mois prochain, et les prix resteront "
        "modestes pendant la première année. Le maire a déclaré que ce projet améliorera les conditions de "
        "travail de centaines de vendeuses.",
        "Les pluies abondantes de la semaine dernière ont provoqué des inondations dans plusieurs quartiers. "
        "Des familles ont dû quitter leurs maisons et sont hébergées dans les écoles voisines. Les autorités "
        "demandent à la population de rester prudente et d'éviter de traverser les rivières en crue.",
        "Pour préparer une bonne soupe de légumes, coupez les carottes, les pommes de terre et les oignons en "
        "petits morceaux. Faites-les revenir dans un peu d'huile, ajoutez de l'eau et du sel, puis laissez "
        "cuire à feu doux pendant une demi-heure avant de servir bien chaud.",
    ],
    "somali": [
        "Dowladda hoose ee magaalada ayaa ku dhawaaqday in mashruuc cusub oo biyo nadiif ah uu gaari doono "
        "tuulooyin badan sanadkan. Dadka deegaanka ayaa soo dhaweeyay warkan, iyagoo sheegay in haweenka iyo "
        "carruurtu ay maalin kasta socdaan masaafo dheer si ay biyo u keenaan.",
        "Beeraleyda gobolka ayaa filaya goosasho wanaagsan xilligan kadib roobabkii joogtada ahaa ee bishii "
        "hore. Qiimaha galleyda ayaa wax yar hoos ugu dhacay suuqyada, taas oo ganacsatadu ay sheegeen inay "
        "war wanaagsan u tahay qoysaska magaalada ku nool.",
        "Kooxda kubadda cagta ee dugsigeenna ayaa ku guuleysatay ciyaartii kama dambaysta ahayd ee gobolka. "
        "Goolka guusha ayaa la dhaliyay daqiiqaddii ugu dambeysay, waxayna taageerayaashu u dabaaldegeen "
        "habeenkii oo dhan.",
    ],
    "kinyarwanda": [
        "Inama njyanama y'umujyi yatangaje ku wa mbere ko umushinga mushya w'amazi meza uzagera mu midugudu "
        "myinshi mbere y'uko umwaka urangira. Abaturage bishimiye iyo nkuru, bavuga ko abagore n'abana bakora "
        "urugendo rurerure buri gitondo bajya kuvoma.",
        "Abahinzi bo mu ntara y'amajyaruguru biteze umusaruro mwiza muri iki gihembwe nyuma y'imvura yaguye "
        "neza. Igiciro cy'ibigori cyagabanutseho gato ku masoko, kandi abacuruzi bavuga ko ari inkuru nziza ku "
        "miryango ituye mu mujyi.",
        "Ikipe y'umupira w'amaguru y'ishuri ryacu yatsinze umukino wa nyuma w'intara ku bitego bibiri kuri "
        "kimwe. Igitego cy'intsinzi cyinjiye ku munota wa nyuma, maze abafana barabyina ijoro ryose.",
    ],
}

BOILERPLATE = ["Soma zaidi", "Shiriki makala hii", "Shiriki habari hii: Facebook | Twitter | WhatsApp",
               "Tunatumia vidakuzi (cookies) kuboresha huduma zetu. Kwa kuendelea kutumia tovuti hii "
               "unakubali sera yetu ya faragha. Kubali", "Haki zote zimehifadhiwa © 2026",
               "Jiunge na jarida letu upate habari kila siku", "Habari zinazohusiana:", "Bofya hapa kusoma zaidi"]

PLANTED = {  # kind -> how many documents/lines carry it
    "exact_duplicate": 8, "near_duplicate": 8, "language_english": 4, "language_french": 3,
    "language_somali": 3, "language_kinyarwanda": 3, "boilerplate": 10, "mojibake": 6, "html": 6,
    "pii": 6, "apostrophe_variant": 6, "empty": 3, "tiny": 4, "invalid_utf8": 2, "malformed_json": 2,
    "missing_text": 2,
}
NUM_GENERATED = 330


def generated_doc(register: str, r: random.Random) -> str:
  openers, body = REGISTERS[register]
  k = min(len(body), r.randint(7, 13))
  sents = [_fill(r.choice(openers), r)] + [_fill(t, r) for t in r.sample(body, k)]
  if register == "mazungumzo":
    return "\n".join(sents)
  return " ".join(sents)


def clean_docs(r: random.Random) -> list[dict]:
  docs = [{"id": f"sample-{reg}-hw{i:02d}", "text": t, "source": "sample", "register": reg}
          for i, (reg, t) in enumerate(HANDWRITTEN)]
  regs = sorted(REGISTERS)
  for i in range(NUM_GENERATED):
    reg = regs[i % len(regs)]
    docs.append({"id": f"sample-{reg}-{i:04d}", "text": generated_doc(reg, r), "source": "sample",
                 "register": reg})
  return docs


def _planted(kind: str, i: int, text, **extra) -> dict:
  d = {"id": f"sample-planted-{kind}-{i}", "source": "sample", "planted": kind, **extra}
  if text is not None:
    d["text"] = text
  return d


def planted_docs(clean: list[dict], r: random.Random) -> tuple[list[dict], list[bytes]]:
  """(planted JSON documents, raw planted lines that are not valid JSON or UTF-8)."""
  out = []
  pool = [d for d in clean if d["register"] != "mazungumzo"]
  for i, d in enumerate(r.sample(pool, PLANTED["exact_duplicate"])):
    out.append(_planted("exact_duplicate", i, d["text"], duplicate_of=d["id"]))
  for i, d in enumerate(r.sample(pool, PLANTED["near_duplicate"])):
    words = d["text"].split(" ")
    edits = [(j, r.choice(["pia", "sana", "kabisa", "tena"])) for j in r.sample(range(len(words)), 3)]
    j, w = edits[0]   # one of the last 3 words changed: 5-gram Jaccard >= 0.93 (same RNG draws)
    j = len(words) - 1 - j % 3
    words[j] = w if words[j] != w else ("pia" if w != "pia" else "sana")
    out.append(_planted("near_duplicate", i, " ".join(words), duplicate_of=d["id"]))
  for lang, texts in FOREIGN.items():
    for i, t in enumerate(texts):
      out.append(_planted(f"language_{lang}", i, t))
  for i in range(PLANTED["boilerplate"]):
    d = generated_doc(r.choice(sorted(REGISTERS)), r)
    lines = r.sample(BOILERPLATE, 2)
    out.append(_planted("boilerplate", i, f"{lines[0]}\n{d}\n{lines[1]}\nSoma zaidi",
                        boilerplate_lines=[lines[0], lines[1], "Soma zaidi"]))
  for i in range(PLANTED["mojibake"]):
    d = generated_doc("habari", r) + " Mzee alisema: “Tumechoka kusubiri—tunataka maji sasa.” Café ya mjini ilifungwa."
    bad = d.encode("utf-8").decode("sloppy-windows-1252")   # UTF-8 read as Windows-1252
    out.append(_planted("mojibake", i, bad))
  for i in range(PLANTED["html"]):
    sents = generated_doc("elimu", r).split(". ")
    body = "".join(f"<p>{s}.</p>\n" for s in sents)
    out.append(_planted("html", i, f"<div class=\"makala\">\n<h2>Habari za elimu</h2>\n{body}"
                        "<br/>Kwa maelezo zaidi&nbsp;bofya <a href=\"/elimu\">hapa</a> &amp; ujiunge.</div>"))
  for i in range(PLANTED["pii"]):
    name = r.choice(NAMES).lower()
    phone = r.choice(["+255 7{0}{1} {2}{3}{4} {5}{6}{7}", "+254 7{0}{1} {2}{3}{4}{5}{6}{7}",
                      "0{0}{1}{2}-{3}{4}{5}-{6}{7}"]).format(*[r.randint(0, 9) for _ in range(8)])
    d = generated_doc("tangazo", r)
    out.append(_planted("pii", i, f"{d} Kwa maswali piga simu {phone} au andika barua pepe kwa "
                        f"{name}.{r.randint(1, 99)}@mfano.co.tz.", pii=[phone]))
  variants = ["’", "ʼ", "`"]
  for i in range(PLANTED["apostrophe_variant"]):
    v = variants[i % 3]
    d = generated_doc("kilimo", r) + " Wafugaji wa ng'ombe walivuka ng'ambo ya mto wakati wa ng'ang'ania."
    out.append(_planted("apostrophe_variant", i, d.replace("'", v), variant=v))
  for i, t in enumerate(["", "   ", "\n\n"]):
    out.append(_planted("empty", i, t))
  for i, t in enumerate(["Karibu.", "Habari yako?", "Asante sana", "Soma zaidi"]):
    out.append(_planted("tiny", i, t))
  for i in range(PLANTED["missing_text"]):
    out.append(_planted("missing_text", i, None, title="Makala bila maandishi"))
  raw = []
  for i in range(PLANTED["invalid_utf8"]):
    raw.append(b'{"id": "sample-planted-invalid_utf8-%d", "source": "sample", "planted": "invalid_utf8", '
               b'"text": "Habari za mji wa Tanga \xff\xfe na \xc3\x28 pwani yake nzuri."}' % i)
  for i in range(PLANTED["malformed_json"]):
    raw.append(b'{"id": "sample-planted-malformed_json-%d", "source": "sample", "planted": "malformed_json", '
               b'"text": "Mstari huu umekatika katikati' % i)
  return out, raw


def build() -> dict[str, bytes]:
  """Shard name -> exact bytes of each shard (deterministic)."""
  r = random.Random(SEED)
  clean = clean_docs(r)
  planted, raw = planted_docs(clean, r)
  lines = [json.dumps(d, ensure_ascii=False).encode("utf-8") for d in clean + planted] + raw
  r.shuffle(lines)
  out = {}
  for k, name in enumerate(SHARDS):
    body = b"".join(line + b"\n" for line in lines[k::len(SHARDS)])
    if name.endswith(".gz"):
      buf = io.BytesIO()
      with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0) as g:
        g.write(body)
      body = buf.getvalue()
    out[name] = body
  return out


def main(argv: list[str] | None = None) -> int:
  SAMPLE_DIR.mkdir(exist_ok=True)
  for name, data in build().items():
    (SAMPLE_DIR / name).write_bytes(data)
    print(f"wrote {SAMPLE_DIR / name} ({len(data)} bytes)")
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
